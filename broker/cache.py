"""Per-replica cache of issued credentials, so session-start storms do not hit upstreams.

An agent asking again for exactly the same thing (same identity, service, environment,
region, tier, backend and resources) gets the same credentials while they still have more
than a safety margin left (the larger of ``margin_seconds`` and ``margin_ratio`` of their
lifetime). The identity is part of the key, so two agents never share credentials. Only
read-tier issuances are cached; escalated credentials are collected once.

Nothing here is shared between replicas: each caches only what it issued itself, and
nothing secret ever reaches the shared store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TLRUCache

from broker.issuers.base import IssuedCredential


@dataclass(frozen=True)
class CacheKey:
    agent_key: str
    agent_subject: str
    service: str
    environment: str
    region: str | None
    tier: str
    backend: str
    resources: tuple[str, ...]
    duration: int  # a shorter request must not get longer-lived credentials


@dataclass(frozen=True)
class CachedEntry:
    request_id: str
    credential: IssuedCredential
    fresh_until: float


class CredentialCache:
    def __init__(
        self,
        margin_seconds: float = 300,
        margin_ratio: float = 0.2,
        maxsize: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.margin_seconds = margin_seconds
        self.margin_ratio = margin_ratio
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: TLRUCache[CacheKey, CachedEntry] = TLRUCache(
            maxsize=maxsize, ttu=lambda _key, entry, _now: entry.fresh_until, timer=clock
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: CacheKey) -> CachedEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.fresh_until <= self.clock():
                self.misses += 1
                return None
            self.hits += 1
            return entry

    def put(
        self, key: CacheKey, request_id: str, credential: IssuedCredential, issued_at: float
    ) -> None:
        lifetime = credential.expires_at - issued_at
        margin = max(self.margin_seconds, self.margin_ratio * lifetime)
        fresh_until = credential.expires_at - margin
        if fresh_until <= self.clock():
            return  # too short-lived to be worth handing out twice
        with self._lock:
            self._entries[key] = CachedEntry(request_id, credential, fresh_until)

    def evict(self, predicate: Callable[[CacheKey], bool]) -> int:
        with self._lock:
            doomed = [key for key in list(self._entries.keys()) if predicate(key)]
            for key in doomed:
                self._entries.pop(key, None)
        return len(doomed)

    def evict_request(self, request_id: str) -> int:
        with self._lock:
            doomed = [
                key for key, entry in list(self._entries.items()) if entry.request_id == request_id
            ]
            for key in doomed:
                self._entries.pop(key, None)
        return len(doomed)

    def evict_services(self, services: frozenset[str]) -> int:
        return self.evict(lambda key: key.service in services)

    def evict_agent(self, agent_subject: str) -> int:
        return self.evict(lambda key: key.agent_subject == agent_subject)

    def clear(self) -> int:
        return self.evict(lambda _key: True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
