"""Guardrails consulted before anything is issued or escalated.

- freezes from the kill switch and the circuit breaker (shared store: all replicas agree);
- change-freeze windows declared by the scope (write/delete only);
- rate limits per agent and scope tier, counted in the shared store;
- the circuit breaker: too many refusals, destructive requests or out-of-scope requests
  within a window freeze the agent and alert the approvers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from broker.audit.recorder import AuditRecorder
from broker.config import BreakerSettings
from broker.errors import (
    BadRequest,
    BrokerError,
    ChangeFreeze,
    Forbidden,
    Frozen,
    NotFound,
    RateLimited,
)
from broker.guard.windows import active_window, describe_window
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest
from broker.notify.base import NotificationFailed, Notifier
from broker.store.base import AuditStore, CounterStore, FreezeStore, IssuedStore
from broker.store.records import FreezeRecord

log = logging.getLogger(__name__)

# Freezes are read from the store at most this often per process: a kill switch takes
# effect on every replica within this many seconds.
FREEZE_CACHE_SECONDS = 1.0


def freeze_matches(
    freeze: FreezeRecord, subject: str, service: str | None, environment: str | None
) -> bool:
    if freeze.kind == "all":
        return True
    if freeze.kind == "agent":
        return freeze.target == subject
    if service is None:
        return False
    return freeze.target in (service, f"{service}/{environment}")


class GuardStore(FreezeStore, IssuedStore, CounterStore, AuditStore, Protocol):
    """Freezes and revocations to read, counters to take, evidence for an alert."""


class Guard:
    def __init__(
        self,
        store: GuardStore,
        audit: AuditRecorder,
        notifier: Notifier,
        breaker: BreakerSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.audit = audit
        self.notifier = notifier
        self.breaker = breaker
        self.clock = clock
        self._freezes: Sequence[FreezeRecord] = ()
        self._revoked: frozenset[str] = frozenset()
        self._freezes_read_at = float("-inf")
        self._lock = threading.Lock()

    # -- freezes ----------------------------------------------------------------------

    def active_freezes(self, fresh: bool = False) -> Sequence[FreezeRecord]:
        self._refresh(fresh)
        return self._freezes

    def revoked_requests(self) -> frozenset[str]:
        """Requests whose credentials the kill switch revoked (still unexpired), as seen by
        every replica within a second: a cache must not hand those out again."""
        self._refresh(False)
        return self._revoked

    def _refresh(self, fresh: bool) -> None:
        now = self.clock()
        with self._lock:
            if fresh or now - self._freezes_read_at > FREEZE_CACHE_SECONDS:
                self._freezes = self.store.active_freezes()
                self._revoked = frozenset(self.store.revoked_request_ids(now))
                self._freezes_read_at = now

    def forget_freezes(self) -> None:
        with self._lock:
            self._freezes_read_at = float("-inf")

    def frozen(
        self, subject: str, service: str | None, environment: str | None
    ) -> FreezeRecord | None:
        for freeze in self.active_freezes():
            if freeze_matches(freeze, subject, service, environment):
                return freeze
        return None

    # -- the Guard protocol -----------------------------------------------------------

    def check(self, identity: AgentIdentity, resolved: ResolvedRequest, now: float) -> None:
        request = resolved.request
        freeze = self.frozen(identity.subject, request.service, request.environment)
        if freeze is not None:
            raise Frozen(
                f"frozen: {freeze.describe()} ({freeze.reason}); nothing is issued "
                "until an operator runs `broker unfreeze`"
            )
        if resolved.escalated:
            window = active_window(resolved.scope, request.tier, now)
            if window is not None:
                raise ChangeFreeze(
                    f"change freeze {describe_window(window)} is in effect for "
                    f"{request.tier} requests of {request.service}",
                    window.name,
                )
            self._breaker_count(identity, "destructive" if request.tier == "delete" else None, now)
        limit = resolved.tier.rate_limit
        if limit is not None:
            key = f"rate:{identity.key}:{request.service}:{request.tier}"
            added, count, oldest = self.store.count_and_add(
                key, limit.per_seconds, limit.count, now
            )
            if not added:
                retry = int((oldest or now) + limit.per_seconds - now) + 1
                raise RateLimited(
                    f"rate limit {limit} for {request.tier} requests of "
                    f"{request.service} reached ({count} in the window)",
                    retry,
                )

    def refused(self, identity: AgentIdentity, error: BrokerError, now: float) -> None:
        if isinstance(error, Frozen | RateLimited):
            return  # already stopped; counting these would only re-trip the breaker
        kind = "out_of_scope" if _out_of_scope(error) else "denial"
        self._breaker_count(identity, kind, now)

    # -- circuit breaker --------------------------------------------------------------

    def _breaker_count(self, identity: AgentIdentity, kind: str | None, now: float) -> None:
        if kind is None:
            return
        limits = {
            "denial": self.breaker.max_denials,
            "destructive": self.breaker.max_destructive_requests,
            "out_of_scope": self.breaker.max_out_of_scope,
        }
        limit = limits[kind]
        key = f"breaker:{kind}:{identity.subject}"
        _, before, _ = self.store.count_and_add(key, self.breaker.window_seconds, None, now)
        if before + 1 < limit or self.frozen(identity.subject, None, None) is not None:
            return
        self.trip(identity.subject, kind, before + 1, now)

    def trip(self, subject: str, kind: str, count: int, now: float) -> None:
        window = self.breaker.window_seconds
        reason = f"circuit breaker: {count} {kind.replace('_', ' ')} events in {window // 60} min"
        self.store.add_freeze(
            FreezeRecord(
                kind="agent",
                target=subject,
                reason=reason,
                created_by="circuit-breaker",
                created_at=now,
            )
        )
        self.forget_freezes()
        evidence = [
            f"{r.action} {r.outcome}: {r.reason or r.request_id or ''}"[:200]
            for r in self.store.recent_audit(actor=subject, limit=10)
        ]
        self.audit.record(
            "breaker_trip",
            "frozen",
            "circuit-breaker",
            reason=reason,
            agent=subject,
            kind=kind,
            count=count,
            evidence=evidence,
        )
        log.warning("circuit breaker froze %s", subject, extra={"kind": kind, "count": count})
        try:
            self.notifier.alert(
                f"Agent {subject} was frozen by the circuit breaker: {reason}.", evidence
            )
        except Exception as e:  # noqa: BLE001 - Slack down must not undo or hide the freeze
            failure = str(e) if isinstance(e, NotificationFailed) else type(e).__name__
            self.audit.record("notify", "failed", "broker", reason=failure, agent=subject)


def _out_of_scope(error: BrokerError) -> bool:
    """A request for resources or scopes the agent may not have."""
    if isinstance(error, Forbidden) and not isinstance(error, Frozen | ChangeFreeze):
        return True
    field = getattr(error, "field", None)
    return isinstance(error, BadRequest | NotFound) and field in ("resources", "service")
