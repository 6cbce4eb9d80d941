"""Guardrails: gather what decides a request, and record what it decided.

The decision itself is :func:`broker.policy.decision.decide_request`, a pure function; the
guard hands it its inputs and keeps the shared state it needs:

- freezes from the kill switch and the circuit breaker (shared store: all replicas agree),
  read at most once a second per process;
- rate limits per agent and scope tier, counted in the shared store;
- the circuit breaker: too many refusals, destructive requests or out-of-scope requests
  within a window freeze the agent and alert the approvers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from broker.audit.recorder import AuditRecorder
from broker.config import BreakerSettings
from broker.errors import BrokerError
from broker.identity.model import AgentIdentity
from broker.notify.base import NotificationFailed, Notifier
from broker.policy.decision import (
    Counters,
    RateCount,
    RequestDecision,
    breaker_event,
    decide_request,
    matching_freeze,
    refusal_before_counting,
)
from broker.store.base import AuditStore, CounterStore, FreezeStore, IssuedStore
from broker.store.records import FreezeRecord

if TYPE_CHECKING:
    from broker.intake import ResolvedRequest  # not imported at run time: `broker revoke`

log = logging.getLogger(__name__)

# Freezes are read from the store at most this often per process: a kill switch takes
# effect on every replica within this many seconds.
FREEZE_CACHE_SECONDS = 1.0
BREAKER_KINDS = ("denial", "destructive", "out_of_scope")


def _breaker_key(kind: str, principal: str) -> str:
    return f"breaker:{kind}:{principal}"


class GuardStore(FreezeStore, IssuedStore, CounterStore, AuditStore, Protocol):
    """Freezes and revocations to read, counters to take, evidence for an alert."""


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class Guard:
    store: GuardStore
    audit: AuditRecorder
    notifier: Notifier
    breaker: BreakerSettings
    clock: Callable[[], float] = time.time
    _freezes: Sequence[FreezeRecord] = field(default=(), init=False)
    _revoked: frozenset[str] = field(default=frozenset(), init=False)
    _freezes_read_at: float = field(default=float("-inf"), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

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
                self._freezes = self.store.active_freezes(now)
                self._revoked = frozenset(self.store.revoked_request_ids(now))
                self._freezes_read_at = now

    def forget_freezes(self) -> None:
        with self._lock:
            self._freezes_read_at = float("-inf")

    def frozen(
        self, principal: str, service: str | None, environment: str | None
    ) -> FreezeRecord | None:
        """The freeze stopping agent ``principal`` (issuer and subject) here, if any."""
        return matching_freeze(self.active_freezes(), principal, service, environment)

    # -- deciding a request -----------------------------------------------------------

    def decide(
        self, identity: AgentIdentity, resolved: ResolvedRequest, now: float
    ) -> RequestDecision:
        """Gather the freezes and counts, and let the pure decision answer."""
        freezes = self.active_freezes()
        counters = Counters()
        if refusal_before_counting(resolved, identity, freezes, now) is None:
            counters = self._count(identity, resolved, now)
        return decide_request(resolved, identity, freezes, counters, now)

    def _count(self, identity: AgentIdentity, resolved: ResolvedRequest, now: float) -> Counters:
        """Count this request: a destructive one for the breaker, and its rate-limit slot."""
        request = resolved.request
        if request.tier == "delete":
            self._breaker_count(identity, "destructive", now)
        limit = resolved.tier.rate_limit
        if limit is None:
            return Counters()
        # The agent (issuer and subject), not identity.key: that also hashes the other
        # identity claims, and an agent whose tokens vary them would get a count per variant.
        key = f"rate:{identity.principal}:{request.service}:{request.tier}"
        taken, count, oldest = self.store.count_and_add(key, limit.per_seconds, limit.count, now)
        return Counters(rate=RateCount(limit, taken, count, oldest))

    def refused(self, identity: AgentIdentity, error: BrokerError, now: float) -> None:
        """Count a refusal towards the circuit breaker."""
        kind = breaker_event(error)
        if kind is not None:
            self._breaker_count(identity, kind, now)

    # -- circuit breaker --------------------------------------------------------------

    def _breaker_count(self, identity: AgentIdentity, kind: str, now: float) -> None:
        limits = {
            "denial": self.breaker.max_denials,
            "destructive": self.breaker.max_destructive_requests,
            "out_of_scope": self.breaker.max_out_of_scope,
        }
        limit = limits[kind]
        principal = identity.principal
        key = _breaker_key(kind, principal)
        _, before, _ = self.store.count_and_add(key, self.breaker.window_seconds, None, now)
        if before + 1 < limit or self.frozen(principal, None, None) is not None:
            return
        self.trip(principal, kind, before + 1, now)

    def restart_breaker(self, principal: str) -> None:
        """Start the breaker's counts of agent ``principal`` again: an operator lifted its
        freeze after reading the evidence, and the refusals that tripped the breaker would
        otherwise freeze it again at its next refusal."""
        self.store.forget([_breaker_key(kind, principal) for kind in BREAKER_KINDS])

    def trip(self, principal: str, kind: str, count: int, now: float) -> None:
        window = self.breaker.window_seconds
        events = f"{count} {kind.replace('_', ' ')} events in {window // 60} min"
        # The freeze's reason names its cause (the 403 `frozen` quotes it); the alert already
        # says "by the circuit breaker", so it gives only the events.
        reason = f"circuit breaker: {events}"
        evidence = [
            f"{r.action} {r.outcome}: {r.reason or r.request_id or ''}"[:200]
            for r in self.store.recent_audit(actor=principal, limit=10)
        ]
        tripped = self.audit.build(
            "breaker_trip",
            "frozen",
            "circuit-breaker",
            reason=reason,
            agent=principal,
            kind=kind,
            count=count,
            evidence=evidence,
        )
        freeze = FreezeRecord(
            kind="agent",
            target=principal,
            reason=reason,
            created_by="circuit-breaker",
            created_at=now,
        )
        self.store.add_freeze(freeze, tripped)
        self.forget_freezes()
        log.warning("circuit breaker froze %s", principal, extra={"kind": kind, "count": count})
        try:
            self.notifier.alert(
                f"Agent {principal} was frozen by the circuit breaker: {events}.", evidence
            )
        except Exception as e:  # noqa: BLE001 - Slack down must not undo or hide the freeze
            failure = str(e) if isinstance(e, NotificationFailed) else type(e).__name__
            self.audit.record("notify", "failed", "broker", reason=failure, agent=principal)
