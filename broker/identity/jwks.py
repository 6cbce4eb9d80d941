"""JSON Web Key Sets of external OIDC issuers: fetched, cached, refreshed, never waited on.

Tokens arrive unauthenticated, so nothing they do may cost the broker much:

- **rate-limited for every caller**: a key set is fetched at most once per
  ``min_refresh_seconds`` per issuer, the very first fetch included (a token naming a
  ``kid`` we do not know triggers a refresh, in case the issuer rotated its keys; a flood
  of made-up ``kid``s, or of tokens for an issuer that is down, causes one fetch);
- **one fetch at a time per issuer, and nobody queues behind it**: while one caller
  fetches, the others answer at once with the keys already held (or 401), so a slow or dead
  issuer holds one thread, never the worker's thread pool; other issuers are not affected;
- **bounded**: a fetch ends within ``timeout_seconds`` in total (a provider trickling bytes
  included) and reads at most ``MAX_JWKS_BYTES``; redirects are followed only within the
  same origin (:mod:`broker.identity.fetch`);
- **fail closed on staleness**: keys held longer than ``max_stale_seconds`` without a
  successful refresh are dropped (a key the issuer withdrew while it was unreachable must
  not stay valid for ever).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt
import requests

from broker.errors import Unauthenticated
from broker.identity.fetch import SameOriginRedirects, get_json_bytes

MAX_JWKS_BYTES = 256 * 1024


@dataclass
class _Issuer:
    """What is known of one key set: the keys, when they were fetched, the last attempt."""

    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float | None = None
    last_attempt: float | None = None
    fetching: bool = False
    failure: str | None = None  # why there are no keys, when there are none


class JwksCache:
    """Per-URL key sets with a TTL, a refresh rate limit, single-flight fetches and a
    staleness bound."""

    def __init__(
        self,
        ttl_seconds: float = 600,
        min_refresh_seconds: float = 30,
        timeout_seconds: float = 5,
        max_stale_seconds: float = 3600,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.min_refresh = min_refresh_seconds
        self.timeout = timeout_seconds
        self.max_stale = max(max_stale_seconds, ttl_seconds)
        self.http = http or SameOriginRedirects()
        self.clock = clock
        self._issuers: dict[str, _Issuer] = {}
        self._lock = threading.Lock()  # guards the table only: never held while fetching
        self.fetches = 0

    def key(self, url: str, kid: str | None) -> jwt.PyJWK:
        """The key ``kid`` of the set at ``url``; raises Unauthenticated when unknown."""
        keys, failure = self._keys(url, refresh=False)
        found = _pick(keys, kid)
        if found is None and kid is not None:
            keys, failure = self._keys(url, refresh=True)  # the issuer may have rotated
            found = _pick(keys, kid)
        if found is not None:
            return found
        if not keys:
            raise Unauthenticated(failure or "the token issuer's keys are unavailable")
        if kid is None:
            raise Unauthenticated("token header has no 'kid'")
        raise Unauthenticated("unknown signing key (kid)")

    def _keys(self, url: str, refresh: bool) -> tuple[dict[str, jwt.PyJWK], str | None]:
        """The keys held for ``url`` (refreshed first when due and allowed now), and why
        there are none when there are none."""
        now = self.clock()
        with self._lock:
            state = self._issuers.setdefault(url, _Issuer())
            if state.fetched_at is not None and now - state.fetched_at > self.max_stale:
                # Too old to trust: fail closed until a refresh succeeds.
                state.keys = {}
                state.failure = "the token issuer's keys are stale (not refreshed in time)"
            due = refresh or state.fetched_at is None or now - state.fetched_at > self.ttl
            allowed = state.last_attempt is None or now - state.last_attempt >= self.min_refresh
            if not (due and allowed) or state.fetching:
                return dict(state.keys), state.failure
            state.fetching = True
            state.last_attempt = now
        fetched: dict[str, jwt.PyJWK] | None = None
        failure = None
        try:
            fetched = self._fetch(url)
        except Unauthenticated as e:
            failure = e.message  # keep serving the keys we had, while they are not stale
        finally:
            with self._lock:
                state.fetching = False
                if fetched is not None:
                    state.keys, state.fetched_at, state.failure = fetched, self.clock(), None
                elif not state.keys:
                    state.failure = failure
                held = dict(state.keys), state.failure
        return held

    def _fetch(self, url: str) -> dict[str, jwt.PyJWK]:
        self.fetches += 1
        try:
            status, body = get_json_bytes(self.http, url, MAX_JWKS_BYTES, self.timeout)
        except requests.RequestException as e:
            raise Unauthenticated("the token issuer's keys are unreachable") from e
        if status != 200:
            raise Unauthenticated("the token issuer's keys are unavailable")
        try:
            key_set = jwt.PyJWKSet.from_json(body.decode())
        except (jwt.PyJWKSetError, ValueError, UnicodeDecodeError) as e:
            raise Unauthenticated("the token issuer published an invalid key set") from e
        return {key.key_id: key for key in key_set.keys if key.key_id}

    def clear(self) -> None:
        with self._lock:
            self._issuers.clear()


def _pick(keys: dict[str, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    """The key named ``kid``; without a kid, the set's only key."""
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)
