"""The broker's own Vault token: obtained, renewed, and replaced before it runs out.

The broker proves itself to Vault the way its platform does: a Kubernetes service account,
another JWT, an AppRole, or (the default) a token handed to it in BROKER_VAULT_TOKEN. Every
Vault call goes through :class:`LoginAdapter`, which first makes sure the token is good:

- at the first call it logs in (or looks the given token up, to learn its lifetime);
- at two thirds of the token's lease it renews it, at the next call or, when none comes,
  from a background thread; when renewal fails or the token is near its maximum TTL, a
  login method logs in again for a fresh one;
- a call refused with 403 because the token was revoked behind the broker's back (an
  operator, a Vault restore) logs in again and is tried once more.

A given token cannot log in again: it is renewed while Vault allows, and once it has
expired every Vault call fails with a clear error until an operator sets a new one. Logins
read the JWT file every time (kubelet rotates service-account tokens). Nothing here logs
or raises a token, a secret id or a JWT.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from hvac import exceptions as vault_errors
from hvac.adapters import JSONAdapter
from hvac.api.auth_methods import JWT, AppRole, Kubernetes, Token

from broker.config import VaultAuthSettings

log = logging.getLogger(__name__)

RENEW_AT = 2 / 3  # of the lease: renew with a third left
RETRY_SECONDS = 10.0  # after a failed renewal of a token still valid, try again this soon
MAX_SLEEP_SECONDS = 300.0  # the renewer looks at least this often (the clock may jump)
# Vault answers these when a token is unknown, expired or revoked (and for a real denial:
# the token is looked up before a 403 is taken as a revoked token).
_REFUSED = (vault_errors.Forbidden, vault_errors.Unauthorized, vault_errors.InvalidRequest)


class LoginFailed(vault_errors.VaultError):  # type: ignore[misc]
    """The broker could not get a usable Vault token; the message is safe to show."""


class VaultLogin:
    """One way to obtain a token: ``login(adapter)`` returns Vault's ``auth`` block."""

    can_login = True

    def __init__(self, settings: VaultAuthSettings) -> None:
        self.settings = settings

    def describe(self) -> str:
        return f"auth/{self.settings.mount_point}"

    def refused(self, error: Exception) -> str:
        return f"Vault refused the broker's login at {self.describe()} ({type(error).__name__})"

    def login(self, adapter: JSONAdapter) -> Mapping[str, Any]:
        settings = self.settings
        if settings.method == "approle":
            answer = AppRole(adapter).login(
                settings.role_id,
                settings.secret_id,
                use_token=False,
                mount_point=settings.mount_point,
            )
        elif settings.method == "kubernetes":
            answer = Kubernetes(adapter).login(
                settings.role, self._jwt(), use_token=False, mount_point=settings.mount_point
            )
        else:
            answer = JWT(adapter).jwt_login(
                settings.role, self._jwt(), use_token=False, path=settings.mount_point
            )
        return _auth_block(answer)

    def _jwt(self) -> str:
        path = self.settings.jwt_path
        try:
            return path.read_text().strip()
        except OSError as e:
            raise LoginFailed(f"cannot read the JWT to log in with at {path}: {e.strerror}") from e


class GivenToken(VaultLogin):
    """BROKER_VAULT_TOKEN: looked up for its lifetime, renewed, never replaced."""

    can_login = False

    def __init__(self, token: str | None) -> None:
        super().__init__(VaultAuthSettings())
        self.token = token

    def describe(self) -> str:
        return "BROKER_VAULT_TOKEN"

    def refused(self, error: Exception) -> str:
        return (
            "Vault does not accept the token in BROKER_VAULT_TOKEN "
            f"({type(error).__name__}: revoked or expired?)"
        )

    def login(self, adapter: JSONAdapter) -> Mapping[str, Any]:
        if not self.token:
            raise LoginFailed("no Vault token: set BROKER_VAULT_TOKEN or configure vault.auth")
        adapter.token = self.token
        data = Token(adapter).lookup_self().get("data") or {}
        return {
            "client_token": self.token,
            "lease_duration": int(data.get("ttl") or 0),
            "renewable": bool(data.get("renewable")),
        }


def login_for(settings: VaultAuthSettings, token: str | None) -> VaultLogin:
    return GivenToken(token) if settings.method == "token" else VaultLogin(settings)


class TokenKeeper:
    """Keeps the token of one :class:`LoginAdapter` good; shared by all its threads."""

    def __init__(self, method: VaultLogin, clock: Callable[[], float] = time.monotonic) -> None:
        self.method = method
        self.clock = clock
        self.logins = 0
        self.renewals = 0
        self.generation = 0  # counts the tokens obtained: a call knows which one it used
        self._token: str | None = None
        self._granted = 0.0  # the lease a login gave: renewals shorter than a third of it
        # mean the token nears its maximum TTL
        self._renewable = False
        self._expires_at = -math.inf
        self._renew_at = -math.inf  # nothing obtained yet: the first call obtains
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None  # started with the first leased token
        self._closed = threading.Event()

    def ensure(self, adapter: LoginAdapter) -> None:
        """Before a call: renew or obtain the token when it is due (one thread does it)."""
        if self.clock() < self._renew_at:
            return
        with self._lock:
            now = self.clock()
            if now < self._renew_at:
                return
            self._refresh(adapter, now)

    def replace_revoked(self, adapter: LoginAdapter, used: int) -> bool:
        """After a 403: is the token of generation ``used`` still valid? If not, log in
        again (True: try the refused call once more), or, for a given token, say it has
        ended. False: the token is fine and the 403 was a real denial."""
        with self._lock:
            if self.generation != used:
                return True  # another thread already replaced it
            try:
                Token(self._plain(adapter)).lookup_self()
                return False
            except _REFUSED as e:
                if not self.method.can_login:
                    self._expires_at = self._renew_at = self.clock()
                    raise LoginFailed(self.method.refused(e)) from e
                log.warning("the broker's Vault token was revoked; logging in again")
            self._obtain(adapter, self.clock())
            return True

    def _refresh(self, adapter: LoginAdapter, now: float) -> None:
        if self._token is not None and self._renewable:
            outcome = self._renew(adapter, now)
            if outcome == "renewed":
                return
            if outcome == "later" and now < self._expires_at:
                self._renew_at = min(now + RETRY_SECONDS, self._expires_at)
                return
        if self._token is None or self.method.can_login:
            self._obtain(adapter, now)
            return
        # A given token Vault will not renew: good until it expires, then nothing is.
        if now >= self._expires_at:
            raise LoginFailed(
                "the broker's Vault token (BROKER_VAULT_TOKEN) has expired: set a new one"
            )
        self._renew_at = self._expires_at

    def _renew(self, adapter: LoginAdapter, now: float) -> str:
        """Renew the token: "renewed"; "replace" when refused, or near its maximum TTL (a
        login gives a full lease); "later" when Vault did not answer (keep it while it lasts)."""
        try:
            auth = _auth_block(Token(self._plain(adapter)).renew_self())
        except _REFUSED as e:
            log.warning(
                "Vault refused to renew the broker's token",
                extra={"error": type(e).__name__, "auth": self.method.describe()},
            )
            return "replace"
        except (vault_errors.VaultError, requests.RequestException) as e:
            log.warning(
                "renewing the broker's Vault token failed; trying again shortly",
                extra={"error": type(e).__name__, "auth": self.method.describe()},
            )
            return "later"
        lease = float(auth.get("lease_duration") or 0)
        if self.method.can_login and lease < self._granted * (1 - RENEW_AT):
            return "replace"
        self.renewals += 1
        self._adopt(adapter, auth, now)
        return "renewed"

    def _obtain(self, adapter: LoginAdapter, now: float) -> None:
        plain = self._plain(adapter)
        try:
            auth = self.method.login(plain)
        except _REFUSED as e:
            raise LoginFailed(self.method.refused(e)) from e
        if not auth.get("client_token"):
            raise LoginFailed(
                f"Vault's answer to the login at {self.method.describe()} has no token"
            )
        self.logins += 1
        self.generation += 1
        self._adopt(adapter, auth, now)
        self._granted = float(auth.get("lease_duration") or 0)
        log.info(
            "the broker has a Vault token",
            extra={"auth": self.method.describe(), "lease_seconds": self._granted},
        )

    def _adopt(self, adapter: LoginAdapter, auth: Mapping[str, Any], now: float) -> None:
        lease = float(auth.get("lease_duration") or 0)
        self._token = str(auth["client_token"])
        self._renewable = bool(auth.get("renewable"))
        # A lease of 0 never expires (a root or an unbounded periodic token).
        self._expires_at = now + lease if lease else math.inf
        self._renew_at = now + lease * RENEW_AT if lease else math.inf
        adapter.token = self._token
        if lease and self._renewer is None:
            self._renewer = threading.Thread(
                target=self._renew_in_background,
                args=(adapter,),
                name="vault-token-renewer",
                daemon=True,
            )
            self._renewer.start()

    def _renew_in_background(self, adapter: LoginAdapter) -> None:
        """Renew on time when no call comes along: a given token left alone past its TTL
        (a quiet night) would be gone for good."""
        pause = 0.0
        while not self._closed.wait(pause):
            try:
                self.ensure(adapter)
                pause = min(max(self._renew_at - self.clock(), 0.05), MAX_SLEEP_SECONDS)
            except Exception as e:  # noqa: BLE001 - the next call reports it; keep trying
                log.warning(
                    "keeping the broker's Vault token fresh failed",
                    extra={"error": type(e).__name__, "auth": self.method.describe()},
                )
                pause = RETRY_SECONDS

    def close(self) -> None:
        """Stop renewing in the background (the token is left to expire)."""
        self._closed.set()

    def _plain(self, adapter: LoginAdapter) -> JSONAdapter:
        """An adapter on the same session that does not come back here (no recursion)."""
        plain = JSONAdapter.from_adapter(adapter)
        plain.token = self._token
        return plain


class LoginAdapter(JSONAdapter):  # type: ignore[misc]
    """hvac's JSON adapter, with the broker's own token made good before every call.

    hvac builds it (``hvac.Client(adapter=LoginAdapter)``; replacing a client's adapter
    afterwards does not reach its API classes); its owner then sets ``keeper``.
    """

    keeper: TokenKeeper

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.keeper.ensure(self)
        used = self.keeper.generation
        try:
            return super().request(*args, **kwargs)
        except vault_errors.Forbidden:
            if not self.keeper.replace_revoked(self, used):
                raise
        return super().request(*args, **kwargs)


def _auth_block(answer: object) -> Mapping[str, Any]:
    auth = answer.get("auth") if isinstance(answer, dict) else None
    if not isinstance(auth, dict):
        raise LoginFailed("Vault's answer to the broker's login is not a token")
    return auth
