"""What the broker answers, as typed values: issued credentials, a pending request, a
request's state, the scope list. Parsing is strict: a malformed answer is ``bad_response``,
never a half-filled value.

``Issued`` holds secrets; its ``repr`` shows only :data:`PUBLIC_FIELDS`.
"""

from __future__ import annotations

import datetime as dt
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from broker_client.errors import BrokerClientError

Tier = Literal["read", "write", "delete"]
Backend = Literal["aws", "vault", "database"]

#: Request states after which nothing more happens to a request.
FINAL_STATES = frozenset({"collected", "denied", "expired", "cancelled"})
#: Credential fields that are safe to show; every other field is treated as secret.
PUBLIC_FIELDS = frozenset(
    {
        "access_key_id",
        "region",
        "role_arn",
        "source_identity",
        "account_id",
        "vault_addr",
        "namespace",
        "accessor",
        "username",
        "lease_id",
        "host",
        "port",
        "database",
    }
)
MAX_MESSAGE = 500


@dataclass(frozen=True, repr=False)
class Issued:
    """Credentials the broker issued. ``credentials`` mixes public ids and secrets; only
    the fields in :data:`PUBLIC_FIELDS` are ever shown by ``repr``."""

    request_id: str
    backend: str
    credentials: Mapping[str, str]
    expires_at: dt.datetime
    cached: bool = False
    #: What the intent granted (sha256, operations, destructive, replacements, tier).
    intent: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        hidden = ", ".join(f"{k}=***" for k in sorted(self.credentials) if k not in PUBLIC_FIELDS)
        return (
            f"Issued(request_id={self.request_id!r}, backend={self.backend!r}, "
            f"expires_at={self.expires_at.isoformat()!r}, cached={self.cached}, "
            f"public={self.public()!r}, {hidden})"
        )

    __str__ = __repr__

    def public(self) -> dict[str, str]:
        """The non-secret fields (ids, addresses): safe to log or show to a model."""
        return {k: v for k, v in self.credentials.items() if k in PUBLIC_FIELDS}

    def seconds_left(self, now: float) -> float:
        return self.expires_at.timestamp() - now

    def require(self, *names: str) -> list[str]:
        """The named credential fields, or ``bad_response`` naming the first missing one."""
        missing = [n for n in names if not self.credentials.get(n)]
        if missing:
            raise BrokerClientError(
                f"the broker's {self.backend} credentials lack '{missing[0]}'", "bad_response"
            )
        return [self.credentials[n] for n in names]

    def to_json(self) -> dict[str, Any]:
        """The issued body as the broker returned it (for ``--format json`` and caches)."""
        return {
            "request_id": self.request_id,
            "status": "issued",
            "backend": self.backend,
            "credentials": dict(self.credentials),
            "expires_at": iso(self.expires_at),
            "cached": self.cached,
            **({"intent": dict(self.intent)} if self.intent else {}),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Issued:
        credentials = body.get("credentials")
        if not isinstance(credentials, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in credentials.items()
        ):
            raise BrokerClientError("the broker's response has no credentials", "bad_response")
        return cls(
            request_id=text_field(body, "request_id"),
            backend=text_field(body, "backend"),
            credentials={k: str(v) for k, v in credentials.items()},
            expires_at=_time(body, "expires_at"),
            cached=bool(body.get("cached", False)),
            intent=_intent(body),
        )

    def credential_process(self) -> dict[str, Any]:
        """The AWS CLI/SDK ``credential_process`` document (Version 1), AWS only."""
        self.require_backend("aws", "credential_process output")
        key, secret = self.require("access_key_id", "secret_access_key")
        document: dict[str, Any] = {
            "Version": 1,
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            "Expiration": iso(self.expires_at),
        }
        if self.credentials.get("session_token"):
            document["SessionToken"] = self.credentials["session_token"]
        if self.credentials.get("account_id"):
            document["AccountId"] = self.credentials["account_id"]
        return document

    def environment(self) -> dict[str, str]:
        """The environment variables the backend's standard tools read.

        aws: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
        ``AWS_REGION``/``AWS_DEFAULT_REGION``; vault: ``VAULT_ADDR``, ``VAULT_TOKEN``
        (``VAULT_NAMESPACE``); database: libpq's ``PGHOST``, ``PGPORT``, ``PGDATABASE``,
        ``PGUSER``, ``PGPASSWORD``.
        """
        c = self.credentials
        if self.backend == "aws":
            key, secret = self.require("access_key_id", "secret_access_key")
            env = {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
            optional = {
                "AWS_SESSION_TOKEN": "session_token",
                "AWS_REGION": "region",
                "AWS_DEFAULT_REGION": "region",
            }
        elif self.backend == "vault":
            (token,) = self.require("token")
            env = {"VAULT_TOKEN": token}
            optional = {"VAULT_ADDR": "vault_addr", "VAULT_NAMESPACE": "namespace"}
        elif self.backend == "database":
            user, password = self.require("username", "password")
            env = {"PGUSER": user, "PGPASSWORD": password}
            optional = {"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "database"}
        else:
            raise BrokerClientError(f"unknown backend '{self.backend}'", "bad_response")
        env.update({name: c[key] for name, key in optional.items() if c.get(key)})
        return dict(sorted(env.items()))

    def export_lines(self) -> str:
        """``export NAME='value'`` lines for a POSIX shell (``eval "$(broker creds ...)"``)."""
        env = self.environment()
        env["BROKER_CREDENTIALS_EXPIRATION"] = iso(self.expires_at)
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())

    def require_backend(self, backend: str, what: str) -> None:
        """Raise ``invalid_argument`` unless these are ``backend`` credentials."""
        if self.backend != backend:
            raise BrokerClientError(
                f"{what} needs {backend} credentials, not {self.backend}", "invalid_argument"
            )


@dataclass(frozen=True)
class PendingRequest:
    """A write/delete request now waiting for human approval (HTTP 202)."""

    request_id: str
    status: str
    approvals_required: int
    approvals_received: int
    expires_at: dt.datetime
    poll_url: str
    approval_url: str
    #: Whether the broker told anyone (Slack...): None when the broker does not say.
    notified: bool | None = None
    #: What the intent will grant (sha256, operations, destructive, replacements, tier).
    intent: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any], approval_url: str) -> PendingRequest:
        notified = body.get("notified")
        return cls(
            request_id=text_field(body, "request_id"),
            status=text_field(body, "status"),
            approvals_required=_int(body, "approvals_required"),
            approvals_received=_int(body, "approvals_received"),
            expires_at=_time(body, "expires_at"),
            poll_url=text_field(body, "poll_url"),
            approval_url=approval_url,
            notified=notified if isinstance(notified, bool) else None,
            intent=_intent(body),
        )


def _intent(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    intent = body.get("intent")
    return dict(intent) if isinstance(intent, Mapping) else None


@dataclass(frozen=True)
class RequestState:
    """An escalated request as its agent sees it (``GET /v1/requests/<id>``)."""

    request_id: str
    status: str  # pending, approved, collected, denied, expired, cancelled
    service: str
    environment: str
    region: str | None
    tier: str
    backend: str
    resources: tuple[str, ...]
    approvals_required: int
    approvals_received: int
    delay_seconds: int
    collectable_at: dt.datetime | None
    collect_deadline: dt.datetime | None
    expires_at: dt.datetime
    reason: str | None
    approval_url: str = ""

    @property
    def final(self) -> bool:
        """Nothing more will happen to this request."""
        return self.status in FINAL_STATES

    def delay_left(self, now: float) -> float:
        """Seconds until an approved request may be collected (0 once it may)."""
        if self.status != "approved" or self.collectable_at is None:
            return 0.0
        return max(0.0, self.collectable_at.timestamp() - now)

    def collectable(self, now: float) -> bool:
        return self.status == "approved" and self.delay_left(now) <= 0

    @classmethod
    def from_json(cls, body: Mapping[str, Any], approval_url: str) -> RequestState:
        resources = body.get("resources", [])
        region = body.get("region")
        reason = body.get("reason")
        return cls(
            request_id=text_field(body, "request_id"),
            status=text_field(body, "status"),
            service=text_field(body, "service"),
            environment=text_field(body, "environment"),
            region=region if isinstance(region, str) else None,
            tier=text_field(body, "tier"),
            backend=text_field(body, "backend"),
            resources=tuple(r for r in resources if isinstance(r, str))
            if isinstance(resources, list)
            else (),
            approvals_required=_int(body, "approvals_required"),
            approvals_received=_int(body, "approvals_received"),
            delay_seconds=_int(body, "delay_seconds"),
            collectable_at=_optional_time(body, "collectable_at"),
            collect_deadline=_optional_time(body, "collect_deadline"),
            expires_at=_time(body, "expires_at"),
            reason=reason[:MAX_MESSAGE] if isinstance(reason, str) else None,
            approval_url=approval_url,
        )


@dataclass(frozen=True)
class IssuanceState:
    """Whether an issuance still stands (``GET /v1/issuances/<request_id>``).

    ``status``: ``active`` (usable), ``revoked`` (the kill switch revoked it), ``frozen``
    (its agent or scope is frozen: nothing may be used until ``broker unfreeze``) or
    ``expired``. ``reason`` is a sentence for humans.
    """

    request_id: str
    status: str
    reason: str | None
    expires_at: dt.datetime | None

    @property
    def stands(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> IssuanceState:
        reason = body.get("reason")
        return cls(
            request_id=text_field(body, "request_id"),
            status=text_field(body, "status"),
            reason=reason[:MAX_MESSAGE] if isinstance(reason, str) else None,
            expires_at=_optional_time(body, "expires_at"),
        )


class ScopeTier(TypedDict):
    name: str
    ttl_seconds: int
    approval_required: bool
    approvals: int
    delay_seconds: int
    max_resources: int | None


class ScopeEnvironment(TypedDict):
    name: str
    regions: list[str]
    backends: list[str]


class ScopeInfo(TypedDict):
    service: str
    description: str
    environments: list[ScopeEnvironment]
    tiers: list[ScopeTier]


class ScopeList(TypedDict):
    """``GET /v1/scopes``: what this agent may request."""

    agent: str
    scopes: list[ScopeInfo]


def refresh_windows(lifetime_seconds: float) -> tuple[int, int]:
    """botocore's (advisory, mandatory) refresh windows for credentials of this lifetime.

    botocore's defaults (15 and 10 minutes) would refresh 15-minute credentials on every
    call; these stay below the broker's own cache margin (the larger of 5 minutes and 20 %
    of the lifetime), so a refresh gets fresh credentials rather than the cached ones.
    """
    advisory = int(min(600.0, max(10.0, lifetime_seconds * 0.25)))
    return advisory, advisory // 2


class Ask(TypedDict, total=False):
    """What narrows a request and how long to wait for its approval (all optional).

    ``intent`` is passed through to the broker as the request's declared intent.
    """

    resources: Sequence[str]
    duration: int | None
    justification: str
    intent: Mapping[str, Any] | None
    wait_timeout: float | None
    on_update: Callable[[RequestState], None] | None


# -- parsing --------------------------------------------------------------------------


def text_field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise BrokerClientError(f"the broker's response lacks '{key}'", "bad_response")
    return value


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BrokerClientError(f"the broker's response lacks '{key}'", "bad_response")
    return value


def _optional_time(body: Mapping[str, Any], key: str) -> dt.datetime | None:
    return None if body.get(key) is None else _time(body, key)


def _time(body: Mapping[str, Any], key: str) -> dt.datetime:
    value = text_field(body, key)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BrokerClientError(f"the broker's '{key}' is not a time", "bad_response") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def format_seconds(seconds: float) -> str:
    """``7:12`` or ``1:02:03``: a countdown for humans (rounded up, never negative)."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
