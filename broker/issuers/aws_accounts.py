"""IAM in the accounts the scopes name: the broker's own, or through an admin role per account.

`broker scopes apply` and the kill switch change tier roles. Tier roles usually live in
other accounts than the broker; there the broker assumes ``aws.admin_role_arn`` (with
``${account}`` filled in) to reach IAM. Without it, only the broker's own account works, and
asking for another is a clear error.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

from broker.errors import BrokerError, UpstreamUnavailable
from broker.issuers.aws_sts import StsIssuer
from broker.policy.globs import substitute

REFRESH_MARGIN_SECONDS = 300


def failure_reason(error: Exception) -> str:
    """Why an IAM change failed, safe to show: AWS's error code, the broker's message, or
    only the exception's type."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "error"))
    if isinstance(error, BrokerError):
        return error.message
    return type(error).__name__


class AwsAccounts:
    def __init__(
        self, sts: StsIssuer, admin_role_arn: str | None = None, principal_arn: str | None = None
    ) -> None:
        self.sts = sts
        self.admin_role_arn = admin_role_arn
        self._principal = principal_arn
        self._identity: dict[str, Any] | None = None
        self._clients: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._identity_lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        # Asked once: the kill switch's threads (one per role) would each ask STS at once.
        with self._identity_lock:
            if self._identity is None:
                sts = self.sts.client("sts", "us-east-1")
                self._identity = dict(sts.get_caller_identity())
            return self._identity

    def own_account(self) -> str:
        return str(self.identity()["Account"])

    def principal(self) -> str:
        """The ARN tier roles must trust: configured, or derived from the broker's identity."""
        if self._principal:
            return self._principal
        arn = str(self.identity()["Arn"])
        if ":assumed-role/" in arn:  # arn:aws:sts::A:assumed-role/ROLE/SESSION -> the role
            partition, account = arn.split(":")[1], arn.split(":")[4]
            role = arn.split(":assumed-role/", 1)[1].rsplit("/", 1)[0]
            return f"arn:{partition}:iam::{account}:role/{role}"
        return arn

    def iam(self, account: str) -> Any:
        """An IAM client acting in ``account``."""
        with self._lock:
            cached = self._clients.get(account)
            if cached is not None and cached[0] > time.time() + REFRESH_MARGIN_SECONDS:
                return cached[1]
        if self.admin_role_arn is None:
            if account != self.own_account():
                raise UpstreamUnavailable(
                    f"tier roles in account {account} need aws.admin_role_arn (a role the "
                    "broker may assume there to manage IAM)",
                    "aws",
                )
            client = self.sts.iam()
            expires = float("inf")
        else:
            arn = substitute(self.admin_role_arn, {"account": account})
            sts = self.sts.client("sts", "us-east-1")
            response = sts.assume_role(
                RoleArn=arn, RoleSessionName="credential-broker-admin", DurationSeconds=3600
            )
            credentials = response["Credentials"]
            session = boto3.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
            )
            client = session.client(
                "iam", region_name="us-east-1", endpoint_url=self.sts.endpoint_url
            )
            expires = credentials["Expiration"].timestamp()
        with self._lock:
            self._clients[account] = (expires, client)
        return client
