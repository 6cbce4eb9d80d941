"""What the two Vault issuers share: calling hvac inside retries and a circuit, and mapping
its exceptions to transient or permanent failures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import requests
from hvac import exceptions as vault_errors
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

from broker.errors import UpstreamUnavailable
from broker.issuers.resilience import (
    CircuitBreaker,
    PermanentError,
    RetryPolicy,
    TransientError,
    call,
    within_deadline,
)
from broker.issuers.vault_login import (
    GivenToken,
    LoginAdapter,
    LoginFailed,
    TokenKeeper,
    VaultLogin,
)

T = TypeVar("T")
TRANSIENT = (
    vault_errors.InternalServerError,
    vault_errors.VaultDown,
    vault_errors.BadGateway,
    vault_errors.RateLimitExceeded,
)


class VaultCaller:
    """Runs hvac calls for one backend name ("vault" or "database")."""

    def __init__(
        self,
        backend: str,
        client: hvac.Client,
        retry: RetryPolicy | None = None,
        circuit: CircuitBreaker | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.backend = backend
        self.client = client
        self.retry = retry or RetryPolicy()
        self.circuit = circuit or CircuitBreaker(backend)
        self.sleep = sleep

    def __call__(self, action: Callable[[hvac.Client], T]) -> T:
        def attempt() -> T:
            try:
                return action(self.client)
            except LoginFailed as e:
                raise PermanentError(str(e)) from e  # written to be shown: no secret in it
            except TRANSIENT as e:
                raise TransientError(type(e).__name__) from e
            except vault_errors.VaultError as e:
                # Forbidden, InvalidRequest, InvalidPath...: the message may echo input but
                # never a token; keep only the class name to be sure.
                raise PermanentError(type(e).__name__) from e
            except requests.RequestException as e:
                raise TransientError(type(e).__name__) from e

        return call(self.backend, attempt, self.retry, self.circuit, sleep=self.sleep)

    def check(self) -> None:
        if self.circuit.state == "open":
            raise UpstreamUnavailable(
                f"{self.backend}: circuit open after repeated failures", self.backend
            )

        def health(client: hvac.Client) -> Any:
            status = client.sys.read_health_status(method="GET")
            if isinstance(status, dict) and status.get("sealed"):
                raise vault_errors.VaultDown("sealed")
            return status

        self(health)


def json_answer(response: object, backend: str) -> dict[str, Any]:
    """Vault's JSON answer. hvac hands back the raw HTTP response when the body is not
    JSON (a proxy's error page, a truncated body): an unusable answer, never a credential."""
    if isinstance(response, dict):
        return response
    raise UpstreamUnavailable(f"{backend} gave an unusable answer (not JSON)", backend)


class DeadlineAdapter(HTTPAdapter):
    """Connection pooling whose timeouts end by the deadline of the broker's current call:
    a retry started late gets only the time left, not a whole timeout of its own."""

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, timeout: Any = None, **kwargs: Any
    ) -> requests.Response:
        if isinstance(timeout, int | float):
            timeout = within_deadline(timeout)
        elif isinstance(timeout, tuple):
            timeout = tuple(None if t is None else within_deadline(t) for t in timeout)
        return super().send(request, timeout=timeout, **kwargs)


def make_client(
    url: str,
    token: str | None,
    namespace: str | None = None,
    verify: bool | str = True,
    timeout: float = 5.0,
    login: VaultLogin | None = None,
) -> hvac.Client:
    """An hvac client with a pooled session and timeouts bounded by the call's deadline,
    whose token ``login`` obtains and keeps fresh (default: ``token`` as given, renewed).

    requests reads proxies, the CA bundle and .netrc from the environment again on every
    call (a walk over ``os.environ``, about 0.1 ms); this client only ever talks to ``url``,
    so the environment is read once, here, with the same rules.
    """
    session = requests.Session()
    adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=50)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.proxies.update(get_environ_proxies(url))
    session.trust_env = False
    if verify is True:
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    client = hvac.Client(
        url=url,
        token=token,
        namespace=namespace,
        verify=verify,
        timeout=timeout,
        session=session,
        adapter=LoginAdapter,
    )
    # hvac falls back to VAULT_TOKEN or ~/.vault-token when given none: the broker uses
    # only the token it was given or logs in for.
    client.token = token
    client.adapter.keeper = TokenKeeper(login or GivenToken(token))
    return client
