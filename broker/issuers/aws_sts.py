"""AWS credentials: AssumeRole of the tier's role with the request's session policy.

STS intersects the role's permission policy (the tier's ceiling, put there by `broker scopes
apply`) with the session policy compiled for this request (its environment, region and
resources), so the session can do no more than both allow. SourceIdentity and the session
name carry the agent, session tags carry service, environment, tier and request id: CloudTrail
ties every call back to the agent and the request. The broker's own AWS credentials come from
boto3's standard chain and never leave this module.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.utils import parse_timestamp

from broker.errors import UpstreamUnavailable
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.issuers.resilience import (
    CircuitBreaker,
    PermanentError,
    RetryPolicy,
    TransientError,
    call,
    within_deadline,
)
from broker.issuers.source_identity import source_identity
from broker.policy.compiler import dumps
from broker.store.records import IssuedRecord

BACKEND = "aws"
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "SlowDown",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
    }
)
_NAME_CHARS = re.compile(r"[^\w+=,.@-]")


def session_name(agent: str, request_id: str) -> str:
    """A RoleSessionName naming the agent (2-64 chars of [\\w+=,.@-])."""
    suffix = request_id[-10:]
    base = _NAME_CHARS.sub("-", agent.removeprefix("agent:"))[: 64 - len(suffix) - 1]
    return f"{base}-{suffix}"


def utc_timestamp(value: Any) -> dt.datetime:
    """A timestamp of an AWS answer: ISO 8601 in UTC (``2024-05-01T12:00:00Z``, what STS
    sends) read by the standard library; anything else by botocore's own parser (dateutil's
    general one, a tenth of an AssumeRole's client side)."""
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value[-1] == "Z":
        try:
            return dt.datetime.fromisoformat(value[:-1]).replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    parsed: dt.datetime = parse_timestamp(value)
    return parsed


def aws_session(region: str | None = None) -> boto3.Session:
    """boto3's session (the standard credential chain) whose answers' timestamps are read by
    :func:`utc_timestamp`."""
    core = botocore.session.get_session()
    parsers = core.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=utc_timestamp)
    return boto3.Session(botocore_session=core, region_name=region)


def encode_body_once(request: Any, **_: Any) -> None:
    """A query API's request body (AssumeRole's, with its session policy: kilobytes of
    JSON, quoted one character at a time) is form-encoded by botocore each time the request
    is prepared: to sign it, to hash it, to send it. Encoded once here, before signing, the
    same text is reused."""
    if isinstance(request.data, dict):
        request.data = request.prepare().body


def _tag(value: str) -> str:
    return re.sub(r"[^\w .:/=+@-]", "-", value)[:256]


class StsIssuer:
    """Issue AWS session credentials through STS AssumeRole."""

    backend = BACKEND

    def __init__(
        self,
        session: boto3.Session | None = None,
        endpoint_url: str | None = None,
        regional: bool = True,
        retry: RetryPolicy | None = None,
        circuit: CircuitBreaker | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.session = session or boto3.Session()
        self.endpoint_url = endpoint_url
        self.regional = regional
        self.retry = retry or RetryPolicy()
        self.circuit = circuit or CircuitBreaker(BACKEND)
        self.sleep = sleep
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._read_timeout = min(5.0, self.retry.deadline_seconds)
        self._config = Config(
            # We retry, within our deadline: botocore must make exactly one HTTP call per
            # attempt ("max_attempts" counts retries after the first call, not calls).
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=min(3.0, self.retry.deadline_seconds),
            read_timeout=self._read_timeout,
            max_pool_connections=50,
            # Every parameter is built here, and STS validates them again: botocore's own
            # check of each call against the API model is work done twice.
            parameter_validation=False,
        )

    def client(self, service: str, region: str) -> Any:
        """A cached client for ``service`` in ``region`` (botocore clients are thread-safe)."""
        key = f"{service}:{region}"
        with self._lock:
            existing = self._clients.get(key)
            if existing is None:
                make: Any = self.session.client
                existing = make(
                    service,
                    region_name=region,
                    endpoint_url=self.endpoint_url,
                    config=self._config,
                )
                existing.meta.events.register("before-call", self._read_within_deadline)
                existing.meta.events.register("before-sign", encode_body_once)
                self._clients[key] = existing
            return existing

    def _read_within_deadline(self, context: dict[str, Any], **_: Any) -> None:
        """A retry started late waits for STS only as long as the deadline still allows
        (botocore takes a per-request read timeout from the request's context)."""
        context["read_timeout"] = within_deadline(self._read_timeout)

    def _sts(self, region: str | None) -> Any:
        # Regional STS endpoints keep working when another region's endpoint is down, and
        # keep the request's traffic in its region.
        return self.client("sts", region if (region and self.regional) else "us-east-1")

    def issue(self, request: IssueRequest) -> IssuedCredential:
        env = request.environment
        grant = request.grant
        if grant.role_arn is None or grant.session_policy is None:
            raise UpstreamUnavailable("no AWS role or session policy for this request", BACKEND)
        role_arn = grant.role_arn
        agent = request.identity.principal
        params = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name(agent, request.request_id),
            "DurationSeconds": request.duration_seconds,
            "Policy": dumps(grant.session_policy),
            "SourceIdentity": source_identity(agent),
            "Tags": [
                {"Key": "broker:service", "Value": _tag(request.scope.service)},
                {"Key": "broker:environment", "Value": _tag(env.name)},
                {"Key": "broker:tier", "Value": request.tier},
                {"Key": "broker:request-id", "Value": request.request_id},
                {"Key": "broker:agent", "Value": _tag(agent)},
            ],
        }
        sts = self._sts(request.region)
        response = self._call(
            lambda: sts.assume_role(**params),
            refused=f"assuming {role_arn}: the role may not exist yet or may not trust the "
            "broker (`broker scopes apply --check` lists what is missing upstream)",
        )
        credentials = response.get("Credentials") or {}
        required = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
        if not all(credentials.get(k) for k in required):
            raise UpstreamUnavailable("STS returned incomplete credentials", BACKEND)
        expiration = credentials["Expiration"]
        return IssuedCredential(
            backend=BACKEND,
            expires_at=expiration.timestamp(),
            secret={
                "secret_access_key": credentials["SecretAccessKey"],
                "session_token": credentials["SessionToken"],
            },
            public={
                "access_key_id": credentials["AccessKeyId"],
                "region": request.region or "",
                "role_arn": role_arn,
                "source_identity": params["SourceIdentity"],  # type: ignore[dict-item]
                "session_name": params["RoleSessionName"],  # type: ignore[dict-item]
            },
        )

    def _call(self, action: Callable[[], Any], refused: str = "") -> Any:
        """``action`` with retries; ``refused`` explains an access denial."""

        def attempt() -> Any:
            try:
                return action()
            except ClientError as e:
                error = e.response.get("Error", {})
                code = str(error.get("Code", "Unknown"))
                status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in THROTTLING_CODES or status >= 500:
                    raise TransientError(f"{code} (HTTP {status})") from e
                if refused and code in ("AccessDenied", "AccessDeniedException"):
                    raise PermanentError(f"{code} {refused}") from e
                raise PermanentError(code) from e
            except (
                EndpointConnectionError,
                ConnectTimeoutError,
                ReadTimeoutError,
                ConnectionClosedError,
            ) as e:
                raise TransientError(type(e).__name__) from e
            except BotoCoreError as e:
                raise TransientError(type(e).__name__) from e

        kwargs: dict[str, Any] = {}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        return call(BACKEND, attempt, self.retry, self.circuit, **kwargs)

    def revoke(self, record: IssuedRecord) -> None:
        """STS sessions cannot be revoked one by one: see broker.guard.revocation."""
        raise UpstreamUnavailable(
            "AWS sessions are revoked per role (the kill switch's revocation policy)", BACKEND
        )

    def check(self) -> None:
        if self.circuit.state == "open":
            raise UpstreamUnavailable("aws: circuit open after repeated failures", BACKEND)
        sts = self._sts(None)
        self._call(lambda: sts.get_caller_identity())

    # -- IAM, for `broker scopes apply` and the kill switch ---------------------------

    def iam(self, region: str = "us-east-1") -> Any:
        return self.client("iam", region)
