"""The Python client agents use to get credentials from the broker.

``BrokerClient`` speaks the broker's HTTP API (``POST /v1/credentials``, ``GET
/v1/requests/<id>``, ``POST /v1/requests/<id>/credentials``, ``GET /v1/scopes``) and hands
back typed results: :class:`Issued` credentials, a :class:`PendingRequest` waiting for
humans, a :class:`RequestState`. Every failure is a :class:`BrokerClientError` subclass
with a stable ``code`` and the HTTP ``status``, so callers branch on types, not on text.

Secrets (secret keys, session tokens, Vault tokens, passwords, the agent's own bearer
token) never appear in a ``repr``, an exception message or a log line of this module.

Only the standard library is imported at module load: ``broker creds`` runs once per
``credential_process`` call, and its local-cache hit should cost no more than the
interpreter start. ``requests``, ``boto3``, ``botocore`` and ``hvac`` are imported where
they are used.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    import boto3
    import hvac
    import requests

__all__ = [
    "ApprovalPending",
    "BrokerClient",
    "BrokerClientError",
    "BrokerUnreachable",
    "Denied",
    "Expired",
    "Frozen",
    "Issued",
    "NotReady",
    "PendingRequest",
    "RequestState",
    "ScopeList",
    "format_seconds",
    "refresh_windows",
]

Tier = Literal["read", "write", "delete"]
Backend = Literal["aws", "vault", "database"]

#: The longest long-poll the broker accepts (``GET /v1/requests/<id>?wait=N``).
MAX_WAIT_SECONDS = 30
DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "agent-credential-broker-client/1"
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
_REQUEST_ID = re.compile(r"req_[a-z0-9]{26}")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_MAX_MESSAGE = 500


# -- errors ---------------------------------------------------------------------------


class BrokerClientError(Exception):
    """Root of every error the client raises.

    ``code`` is the broker's machine-readable error code (``bad_request``, ``not_found``,
    ``unauthenticated``, ``rate_limited``, ``upstream_unavailable``...) or one of the
    client's own (``unreachable``, ``bad_response``, ``invalid_argument``, ``denied``,
    ``expired``, ``pending``). ``status`` is the HTTP status, when there was a response.
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status: int | None = None,
        *,
        request_id: str | None = None,
        field: str | None = None,
        retry_after: int | None = None,
        http_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.request_id = request_id  # the escalation request (req_...), when one is known
        self.field = field  # the request field the broker blamed
        self.retry_after = retry_after  # seconds, for rate limits
        self.http_request_id = http_request_id  # the broker's X-Request-ID, for its logs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, {self.message!r})"


class BrokerUnreachable(BrokerClientError):
    """No answer from the broker (connection refused, DNS, TLS, timeout, a proxy's 502)."""

    default_code = "unreachable"


class Denied(BrokerClientError):
    """The broker or an approver said no: not a requester, out of scope, change freeze,
    blast radius, an approver's deny, or an open request cancelled by an operator."""

    default_code = "forbidden"


class Frozen(BrokerClientError):
    """The kill switch or the circuit breaker froze this agent or scope: nothing is issued
    until an operator runs ``broker unfreeze``."""

    default_code = "frozen"


class Expired(BrokerClientError):
    """The request expired before it was decided or collected, or was already collected."""

    default_code = "expired"


class NotReady(BrokerClientError):
    """Collecting too early: approvals are missing or the mandatory delay is running."""

    default_code = "not_ready"


class ApprovalPending(BrokerClientError):
    """Waiting timed out while the request was still pending (``request_id`` says which)."""

    default_code = "pending"


# -- results --------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Issued:
    """Credentials the broker issued. ``credentials`` mixes public ids and secrets; only
    the fields in :data:`PUBLIC_FIELDS` are ever shown by ``repr``."""

    request_id: str
    backend: str
    credentials: Mapping[str, str]
    expires_at: dt.datetime
    cached: bool = False

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
            "expires_at": _iso(self.expires_at),
            "cached": self.cached,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Issued:
        credentials = body.get("credentials")
        if not isinstance(credentials, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in credentials.items()
        ):
            raise BrokerClientError("the broker's response has no credentials", "bad_response")
        return cls(
            request_id=_str(body, "request_id"),
            backend=_str(body, "backend"),
            credentials={k: str(v) for k, v in credentials.items()},
            expires_at=_time(body, "expires_at"),
            cached=bool(body.get("cached", False)),
        )

    def credential_process(self) -> dict[str, Any]:
        """The AWS CLI/SDK ``credential_process`` document (Version 1), AWS only."""
        self._only("aws", "credential_process output")
        key, secret = self.require("access_key_id", "secret_access_key")
        document: dict[str, Any] = {
            "Version": 1,
            "AccessKeyId": key,
            "SecretAccessKey": secret,
            "Expiration": _iso(self.expires_at),
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
        env["BROKER_CREDENTIALS_EXPIRATION"] = _iso(self.expires_at)
        return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())

    def _only(self, backend: str, what: str) -> None:
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

    @classmethod
    def from_json(cls, body: Mapping[str, Any], approval_url: str) -> PendingRequest:
        return cls(
            request_id=_str(body, "request_id"),
            status=_str(body, "status"),
            approvals_required=_int(body, "approvals_required"),
            approvals_received=_int(body, "approvals_received"),
            expires_at=_time(body, "expires_at"),
            poll_url=_str(body, "poll_url"),
            approval_url=approval_url,
        )


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
            request_id=_str(body, "request_id"),
            status=_str(body, "status"),
            service=_str(body, "service"),
            environment=_str(body, "environment"),
            region=region if isinstance(region, str) else None,
            tier=_str(body, "tier"),
            backend=_str(body, "backend"),
            resources=tuple(r for r in resources if isinstance(r, str))
            if isinstance(resources, list)
            else (),
            approvals_required=_int(body, "approvals_required"),
            approvals_received=_int(body, "approvals_received"),
            delay_seconds=_int(body, "delay_seconds"),
            collectable_at=_optional_time(body, "collectable_at"),
            collect_deadline=_optional_time(body, "collect_deadline"),
            expires_at=_time(body, "expires_at"),
            reason=reason[:_MAX_MESSAGE] if isinstance(reason, str) else None,
            approval_url=approval_url,
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


# -- the client -----------------------------------------------------------------------


class BrokerClient:
    """A typed client of the broker's agent API.

    ``url`` is the broker's base URL; authenticate with a fixed ``token`` or a
    ``token_provider`` called before every request (for OIDC tokens that rotate, such as
    CI job tokens or projected Kubernetes service-account tokens). ``timeout`` bounds each
    HTTP call (long-polls add their wait to it). ``session`` is the ``requests.Session``
    to use (connection pooling, proxies, custom CA bundles). ``clock`` is the wall clock
    used to judge expiry and approval delays.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        token_provider: Callable[[], str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (token is None) == (token_provider is None):
            raise BrokerClientError(
                "pass exactly one of token and token_provider", "invalid_argument"
            )
        url = url.strip().rstrip("/")
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
            raise BrokerClientError(
                "the broker URL must be http(s)://host[:port][/path]", "invalid_argument"
            )
        if not timeout > 0:
            raise BrokerClientError("timeout must be positive", "invalid_argument")
        self.url = url
        self.timeout = timeout
        self._token = token
        self._token_provider = token_provider
        if session is None:
            import requests

            session = requests.Session()
        self._session = session
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"BrokerClient(url={self.url!r})"

    # -- the API ------------------------------------------------------------------

    def request(
        self,
        service: str,
        environment: str,
        tier: Tier,
        backend: Backend,
        region: str | None = None,
        resources: Sequence[str] = (),
        duration: int | None = None,
        justification: str = "",
    ) -> Issued | PendingRequest:
        """Ask for credentials: ``Issued`` at once for read, ``PendingRequest`` for
        write/delete (approvers are notified; :meth:`wait`, then :meth:`collect`)."""
        if isinstance(resources, str):
            raise BrokerClientError("resources must be a list of strings", "invalid_argument")
        body: dict[str, Any] = {
            "service": service,
            "environment": environment,
            "tier": tier,
            "backend": backend,
        }
        if region:
            body["region"] = region
        if resources:
            body["resources"] = list(resources)
        if duration is not None:
            body["duration"] = duration
        if justification:
            body["justification"] = justification
        status, data = self._call("POST", "/v1/credentials", body=body)
        if status == 202:
            request_id = _str(data, "request_id")
            return PendingRequest.from_json(data, self.approval_url(request_id))
        return Issued.from_json(data)

    def status(self, request_id: str, wait: float = 0) -> RequestState:
        """The request's state; with ``wait`` (0-30 s), long-poll until it changes."""
        _check_request_id(request_id)
        if not 0 <= wait <= MAX_WAIT_SECONDS:
            raise BrokerClientError(
                f"wait must be between 0 and {MAX_WAIT_SECONDS} seconds", "invalid_argument"
            )
        params = {"wait": f"{wait:g}"} if wait else None
        _, data = self._call(
            "GET", f"/v1/requests/{request_id}", params=params, timeout=self.timeout + wait
        )
        return RequestState.from_json(data, self.approval_url(request_id))

    def wait(
        self,
        request_id: str,
        timeout: float | None = None,
        on_update: Callable[[RequestState], None] | None = None,
    ) -> RequestState:
        """Long-poll until the request is decided and collectable, or final.

        Returns the last state: ``approved`` once the mandatory delay has passed, a final
        state (denied, expired, cancelled, collected), or whatever it is when ``timeout``
        seconds have passed. ``on_update`` is called with every new state, first included.
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        state = self.status(request_id)
        seen: RequestState | None = None
        while True:
            if on_update is not None and state != seen:
                on_update(state)
            seen = state
            now = self._clock()
            if state.final or state.collectable(now):
                return state
            poll = float(MAX_WAIT_SECONDS)
            if state.status == "approved":
                poll = min(poll, state.delay_left(now))
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return state
                poll = min(poll, left)
            state = self.status(request_id, wait=min(MAX_WAIT_SECONDS, max(0.1, poll)))

    def collect(self, request_id: str) -> Issued:
        """Collect an approved request's credentials (once; their lifetime starts now)."""
        _check_request_id(request_id)
        _, data = self._call("POST", f"/v1/requests/{request_id}/credentials")
        return Issued.from_json(data)

    def complete(
        self,
        request_id: str,
        timeout: float | None = None,
        on_update: Callable[[RequestState], None] | None = None,
    ) -> Issued:
        """Wait for an escalation's decision and delay, then collect it.

        Raises :class:`Denied` (denied or cancelled, with the reason), :class:`Expired`
        (expired or already collected) or :class:`ApprovalPending` (``timeout`` passed).
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        pause = 1.0
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            state = self.wait(request_id, left, on_update)
            _raise_for_final(state)
            if not state.collectable(self._clock()):
                raise ApprovalPending(
                    f"request {request_id} is still {state.status} "
                    f"({state.approvals_received}/{state.approvals_required} approvals)",
                    request_id=request_id,
                )
            try:
                return self.collect(request_id)
            except NotReady:
                # Our clock ran ahead of the broker's: the delay is not over there yet.
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise
                self._sleep(pause)
                pause = min(pause * 2, 5.0)

    def obtain(
        self,
        service: str,
        environment: str,
        tier: Tier,
        backend: Backend,
        region: str | None = None,
        resources: Sequence[str] = (),
        duration: int | None = None,
        justification: str = "",
        wait_timeout: float | None = None,
        on_update: Callable[[RequestState], None] | None = None,
    ) -> Issued:
        """:meth:`request`, then for an escalation :meth:`complete`: credentials or an error."""
        outcome = self.request(
            service, environment, tier, backend, region, resources, duration, justification
        )
        if isinstance(outcome, Issued):
            return outcome
        return self.complete(outcome.request_id, wait_timeout, on_update)

    def scopes(self) -> ScopeList:
        """The scopes this agent may request: environments, regions, backends, tiers."""
        _, data = self._call("GET", "/v1/scopes")
        if not isinstance(data.get("scopes"), list):
            raise BrokerClientError("the broker's scope list is malformed", "bad_response")
        return data  # type: ignore[return-value]

    def now(self) -> float:
        """The client's wall clock (seconds since the epoch)."""
        return self._clock()

    def approval_url(self, request_id: str) -> str:
        """The approval page of a request, to show the humans who must decide."""
        return f"{self.url}/requests/{request_id}"

    # -- SDK adapters -------------------------------------------------------------

    def boto3_session(
        self,
        service: str,
        environment: str,
        region: str,
        tier: Tier = "read",
        resources: Sequence[str] = (),
        duration: int | None = None,
        justification: str = "",
        wait_timeout: float | None = None,
        on_update: Callable[[RequestState], None] | None = None,
    ) -> boto3.Session:
        """A ``boto3.Session`` whose credentials come from, and refresh through, the broker.

        The first credentials are fetched now (so a refusal raises here). botocore
        refreshes them before they expire (see :func:`refresh_windows`). For write and
        delete tiers every refresh is a new request that waits for approval again: an
        approval grants one set of credentials, never a renewable session.
        """
        import boto3
        import botocore.credentials
        import botocore.session

        def fetch() -> Issued:
            return self.obtain(
                service,
                environment,
                tier,
                "aws",
                region,
                resources,
                duration,
                justification,
                wait_timeout,
                on_update,
            )

        def refresh() -> dict[str, Any]:
            return _botocore_metadata(fetch())

        def now() -> dt.datetime:
            return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

        first = fetch()
        advisory, mandatory = refresh_windows(first.seconds_left(self._clock()))
        metadata = _botocore_metadata(first)
        credentials = botocore.credentials.RefreshableCredentials(
            access_key=metadata["access_key"],
            secret_key=metadata["secret_key"],
            token=metadata["token"],
            expiry_time=first.expires_at,
            refresh_using=refresh,
            method="custom-agent-credential-broker",
            time_fetcher=now,
            advisory_timeout=advisory,
            mandatory_timeout=mandatory,
        )

        class BrokerProvider(botocore.credentials.CredentialProvider):
            METHOD = "custom-agent-credential-broker"
            CANONICAL_NAME = "custom-agent-credential-broker"

            def load(self) -> botocore.credentials.Credentials:
                return credentials

        core = botocore.session.Session()
        core.register_component(
            "credential_provider", botocore.credentials.CredentialResolver([BrokerProvider()])
        )
        return boto3.Session(botocore_session=core, region_name=region)

    def vault_client(
        self,
        service: str,
        environment: str,
        tier: Tier = "read",
        resources: Sequence[str] = (),
        duration: int | None = None,
        justification: str = "",
        wait_timeout: float | None = None,
        on_update: Callable[[RequestState], None] | None = None,
        url: str | None = None,
        verify: bool | str = True,
    ) -> hvac.Client:
        """An ``hvac.Client`` holding a Vault token the broker issued for this scope tier.

        ``url`` overrides the ``vault_addr`` the broker returned (when the agent reaches
        Vault by another name). The token is not renewable through the broker: ask again
        once ``Issued.expires_at`` nears.
        """
        import hvac

        issued = self.obtain(
            service,
            environment,
            tier,
            "vault",
            None,
            resources,
            duration,
            justification,
            wait_timeout,
            on_update,
        )
        (token,) = issued.require("token")
        address = url or issued.credentials.get("vault_addr")
        if not address:
            raise BrokerClientError(
                "the broker returned no vault_addr; pass url=", "invalid_argument"
            )
        return hvac.Client(
            url=address,
            token=token,
            verify=verify,
            namespace=issued.credentials.get("namespace") or None,
        )

    # -- HTTP ---------------------------------------------------------------------

    def _bearer(self) -> str:
        token = self._token if self._token_provider is None else self._token_provider()
        token = (token or "").strip()
        if not token:
            raise BrokerClientError("the agent token is empty", "invalid_argument")
        return token

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        import requests

        headers = {
            "Authorization": f"Bearer {self._bearer()}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            response = self._session.request(
                method,
                self.url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=timeout or self.timeout,
                allow_redirects=False,  # never carry the bearer token somewhere else
            )
        except requests.RequestException as e:
            # ``from None``: the requests exception holds the request, Authorization
            # header included; it must not travel with our error.
            raise BrokerUnreachable(
                f"cannot reach the broker at {self.url}: {_network_reason(e)}"
            ) from None
        return _decode(response)


# -- helpers --------------------------------------------------------------------------


def _decode(response: requests.Response) -> tuple[int, dict[str, Any]]:
    """A 200/202 JSON object, or the matching :class:`BrokerClientError`."""
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if status in (200, 202):
        if not isinstance(data, dict):
            raise BrokerClientError(
                f"the broker answered HTTP {status} without a JSON object", "bad_response", status
            )
        return status, data
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        if status in (502, 503, 504):
            raise BrokerUnreachable(
                f"HTTP {status} from a proxy in front of the broker", status=status
            )
        raise BrokerClientError(f"unexpected HTTP {status} from the broker", "bad_response", status)
    code = data["error"]
    message = str(data.get("message") or code)[:_MAX_MESSAGE]
    retry = response.headers.get("Retry-After", "")
    field_ = data.get("field")
    kwargs: dict[str, Any] = {
        "field": field_ if isinstance(field_, str) else None,
        "retry_after": int(retry) if retry.isdigit() else None,
        "http_request_id": response.headers.get("X-Request-ID"),
    }
    error_class: type[BrokerClientError] = BrokerClientError
    if code == "frozen":
        error_class = Frozen
    elif code == "not_ready":
        error_class = NotReady
    elif status == 403:
        error_class = Denied
    elif status == 410:
        error_class = Expired
    raise error_class(message, code, status, **kwargs)


def _raise_for_final(state: RequestState) -> None:
    reason = state.reason or state.status
    if state.status in ("denied", "cancelled"):
        raise Denied(reason, state.status, request_id=state.request_id)
    if state.status == "expired":
        raise Expired(
            f"request {state.request_id} expired: {reason}", "expired", request_id=state.request_id
        )
    if state.status == "collected":
        raise Expired(
            f"request {state.request_id} was already collected",
            "collected",
            request_id=state.request_id,
        )


def _botocore_metadata(issued: Issued) -> dict[str, Any]:
    issued._only("aws", "a boto3 session")
    key, secret = issued.require("access_key_id", "secret_access_key")
    return {
        "access_key": key,
        "secret_key": secret,
        "token": issued.credentials.get("session_token"),
        "expiry_time": _iso(issued.expires_at),
    }


def _network_reason(error: Exception) -> str:
    import requests

    if isinstance(error, requests.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed"
    found = _ERRNO.search(str(error))
    if found:
        return found.group(1).strip().lower()
    if "Name or service not known" in str(error) or "getaddrinfo" in str(error):
        return "unknown host"
    return "connection failed"


def _check_request_id(value: str) -> None:
    if not isinstance(value, str) or not _REQUEST_ID.fullmatch(value):
        raise BrokerClientError(
            "a request id looks like req_ followed by 26 letters and digits", "invalid_argument"
        )


def _str(body: Mapping[str, Any], key: str) -> str:
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
    value = _str(body, key)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BrokerClientError(f"the broker's '{key}' is not a time", "bad_response") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def format_seconds(seconds: float) -> str:
    """``7:12`` or ``1:02:03``: a countdown for humans (rounded up, never negative)."""
    total = max(0, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
