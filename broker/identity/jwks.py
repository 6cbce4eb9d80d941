"""JSON Web Key Sets of external OIDC issuers: fetched, cached, refreshed on unknown ``kid``.

A token naming a ``kid`` we do not know triggers one refetch (the issuer may have rotated
its keys), but at most once per ``min_refresh_seconds`` per issuer, so a flood of tokens
with made-up ``kid``s cannot turn the broker into a JWKS-fetching amplifier.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import requests

from broker.errors import Unauthenticated

MAX_JWKS_BYTES = 256 * 1024


@dataclass
class _CachedSet:
    keys: dict[str, jwt.PyJWK]
    fetched_at: float


class JwksCache:
    """Per-URL key sets with a TTL and a rate limit on refreshes."""

    def __init__(
        self,
        ttl_seconds: float = 600,
        min_refresh_seconds: float = 30,
        timeout_seconds: float = 5,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.min_refresh = min_refresh_seconds
        self.timeout = timeout_seconds
        self.http = http or requests.Session()
        self.clock = clock
        self._sets: dict[str, _CachedSet] = {}
        self._last_attempt: dict[str, float] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def key(self, url: str, kid: str | None) -> jwt.PyJWK:
        """The key ``kid`` of the set at ``url``; raises Unauthenticated when unknown."""
        now = self.clock()
        cached = self._sets.get(url)
        if cached is None or now - cached.fetched_at > self.ttl:
            cached = self._refresh(url, force=cached is None)
        if kid is None:
            if cached is not None and len(cached.keys) == 1:
                return next(iter(cached.keys.values()))
            raise Unauthenticated("token header has no 'kid'")
        if cached is not None and kid in cached.keys:
            return cached.keys[kid]
        cached = self._refresh(url, force=False)
        if cached is not None and kid in cached.keys:
            return cached.keys[kid]
        raise Unauthenticated("unknown signing key (kid)")

    def _refresh(self, url: str, force: bool) -> _CachedSet | None:
        with self._lock:
            now = self.clock()
            last = self._last_attempt.get(url)
            if not force and last is not None and now - last < self.min_refresh:
                return self._sets.get(url)
            self._last_attempt[url] = now
            try:
                keys = self._fetch(url)
            except Unauthenticated:
                if url in self._sets:
                    return self._sets[url]  # keep serving the keys we had
                raise
            cached = _CachedSet(keys=keys, fetched_at=now)
            self._sets[url] = cached
            return cached

    def _fetch(self, url: str) -> dict[str, jwt.PyJWK]:
        self.fetches += 1
        try:
            response = self.http.get(url, timeout=self.timeout, stream=True)
            body = response.raw.read(MAX_JWKS_BYTES + 1, decode_content=True)
            response.close()
        except requests.RequestException as e:
            raise Unauthenticated("the token issuer's keys are unreachable") from e
        if response.status_code != 200 or len(body) > MAX_JWKS_BYTES:
            raise Unauthenticated("the token issuer's keys are unavailable")
        try:
            key_set = jwt.PyJWKSet.from_json(body.decode())
        except (jwt.PyJWKSetError, ValueError, UnicodeDecodeError) as e:
            raise Unauthenticated("the token issuer published an invalid key set") from e
        return {key.key_id: key for key in key_set.keys if key.key_id}

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()
            self._last_attempt.clear()
