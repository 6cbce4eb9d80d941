"""``BrokerClient``: the broker's agent API as typed calls.

``POST /v1/credentials``, ``GET /v1/requests/<id>`` (with long-poll), ``POST
/v1/requests/<id>/credentials``, ``GET /v1/issuances/<id>`` and ``GET /v1/scopes``, each
returning a value from :mod:`broker_client.results` or raising a
:class:`~broker_client.errors.BrokerClientError` subclass.

Secrets (secret keys, session tokens, Vault tokens, passwords, the agent's own bearer
token) never appear in a ``repr``, an exception message or a log line of this module.

Only the standard library is imported at module load: ``broker-creds`` runs once per
``credential_process`` call, and its local-cache hit should cost no more than the
interpreter start. ``requests``, ``boto3`` and ``hvac`` are imported where they are used.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from broker_client.errors import (
    ApprovalPending,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
    NotReady,
)
from broker_client.results import (
    MAX_MESSAGE,
    Ask,
    Backend,
    IssuanceState,
    Issued,
    PendingRequest,
    RequestState,
    ScopeList,
    Tier,
    format_seconds,
    text_field,
)

if TYPE_CHECKING:
    import boto3
    import hvac
    import requests

#: The longest long-poll the broker accepts (``GET /v1/requests/<id>?wait=N``).
MAX_WAIT_SECONDS = 30
MIN_POLL_SECONDS = 1.0  # between polls the broker answered at once, nothing having changed
DEFAULT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "agent-credential-broker-client/1"
_REQUEST_ID = re.compile(r"req_[a-z0-9]{26}")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


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
        intent: Mapping[str, Any] | None = None,
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
        optional = {
            "region": region or None,
            "resources": list(resources) or None,
            "duration": duration,
            "justification": justification or None,
            "intent": dict(intent) if intent is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        status, data = self._call("POST", "/v1/credentials", body=body)
        if status == 202:
            request_id = text_field(data, "request_id")
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
            wait = min(MAX_WAIT_SECONDS, max(0.1, poll))
            asked = time.monotonic()
            state = self.status(request_id, wait=wait)
            early = time.monotonic() - asked < min(wait, MIN_POLL_SECONDS)
            if early and state == seen:
                # The broker answered without waiting (its long-poll slots were taken):
                # ask again in a second, not at once.
                time.sleep(min(MIN_POLL_SECONDS, max(0.0, poll - (time.monotonic() - asked))))

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
            raise_for_final(state)
            now = self._clock()
            if not state.collectable(now):
                raise ApprovalPending(still_waiting(state, now), request_id=request_id)
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
        **ask: Unpack[Ask],
    ) -> Issued:
        """:meth:`request`, then for an escalation :meth:`complete`: credentials or an error."""
        outcome = self.request(
            service,
            environment,
            tier,
            backend,
            region,
            ask.get("resources", ()),
            ask.get("duration"),
            ask.get("justification", ""),
            ask.get("intent"),
        )
        if isinstance(outcome, Issued):
            return outcome
        return self.complete(outcome.request_id, ask.get("wait_timeout"), ask.get("on_update"))

    def withdraw(self, request_id: str) -> RequestState:
        """Withdraw an open request (nobody waits for it any more); returns its state."""
        _check_request_id(request_id)
        _, data = self._call("DELETE", f"/v1/requests/{request_id}")
        return RequestState.from_json(data, self.approval_url(request_id))

    def issuance(self, request_id: str) -> IssuanceState:
        """Whether the credentials issued under ``request_id`` still stand (not revoked,
        their agent and scope not frozen); for caches to check before serving a copy."""
        _check_request_id(request_id)
        _, data = self._call("GET", f"/v1/issuances/{request_id}")
        return IssuanceState.from_json(data)

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

    # -- SDK adapters (in broker_client.adapters; here for discoverability) --------

    def boto3_session(
        self, service: str, environment: str, region: str, tier: Tier = "read", **ask: Unpack[Ask]
    ) -> boto3.Session:
        """A ``boto3.Session`` whose credentials come from, and refresh through, the broker.

        See :func:`broker_client.adapters.boto3_session`.
        """
        from broker_client.adapters import boto3_session

        return boto3_session(self, service, environment, region, tier, **ask)

    def vault_client(
        self,
        service: str,
        environment: str,
        tier: Tier = "read",
        *,
        url: str | None = None,
        verify: bool | str = True,
        **ask: Unpack[Ask],
    ) -> hvac.Client:
        """An ``hvac.Client`` holding a Vault token the broker issued for this scope tier.

        See :func:`broker_client.adapters.vault_client`.
        """
        from broker_client.adapters import vault_client

        return vault_client(self, service, environment, tier, url=url, verify=verify, **ask)

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


def still_waiting(state: RequestState, now: float) -> str:
    """Why a request cannot be collected yet, in one sentence (pure)."""
    if state.status == "approved":
        return (
            f"request {state.request_id} is approved; its mandatory delay ends in "
            f"{format_seconds(state.delay_left(now))}"
        )
    return (
        f"request {state.request_id} is still {state.status} "
        f"({state.approvals_received}/{state.approvals_required} approvals)"
    )


def raise_for_final(state: RequestState) -> None:
    """Raise the error a final state means: denied, cancelled, expired or collected."""
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
    message = str(data.get("message") or code)[:MAX_MESSAGE]
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
