"""The store seam: one protocol per aggregate, which services depend on.

:class:`broker.store.sql.SqlStore` implements them all on SQLite or PostgreSQL; a service
takes only the protocols it uses (a guard reads freezes and counters, the approval service
requests and approvals), so a test may hand it a small fake of exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, Unpack

from broker.store.records import (
    ApprovalRecord,
    AuditRecord,
    Completion,
    DecisionResult,
    FreezeRecord,
    IssuedRecord,
    Reach,
    RequestRecord,
)


class RequestStore(Protocol):
    """Escalated requests; a state changes only by compare-and-set."""

    def create_request(self, record: RequestRecord, audit: AuditRecord | None = None) -> None:
        """Store ``record`` and its audit record together."""
        ...

    def get_request(self, request_id: str) -> RequestRecord | None: ...

    def list_requests(
        self,
        agent_key: str | None = None,
        agent_subject: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 100,
    ) -> list[RequestRecord]:
        """Most recent first."""
        ...

    def requests_due(self, now: float) -> list[RequestRecord]:
        """Pending requests past their expiry, approved ones past their collect window."""
        ...

    def transition(
        self,
        request_id: str,
        from_statuses: Sequence[str],
        audit: AuditRecord | None = None,
        **changes: Any,
    ) -> RequestRecord | None:
        """The request changed (with ``audit``, in one transaction), or None when its
        status is no longer one of those (nothing audited)."""
        ...

    def claim(
        self,
        request_id: str,
        from_statuses: Sequence[str],
        changes: dict[str, Any],
        intent: IssuedRecord | None,
        audit: AuditRecord | None,
    ) -> tuple[RequestRecord | None, IssuedRecord | None]:
        """:meth:`transition` with the write-ahead of the credential it leads to, at once."""
        ...

    def set_notification(self, request_id: str, notification: dict[str, Any]) -> None: ...

    def set_impact(self, request_id: str, impact: dict[str, Any]) -> RequestRecord | None:
        """Record the measured impact of a request's intent; the updated request."""
        ...

    def count_requests(self, status: str) -> int: ...


class RequestChanges(Protocol):
    """Announced changes of requests, so a long poll wakes when its request changes."""

    def change_mark(self, request_id: str) -> int:
        """Take before reading the request; :meth:`wait_for_change` compares with it."""
        ...

    def wait_for_change(self, request_id: str, mark: int, timeout: float) -> bool:
        """Until ``request_id`` changed after ``mark`` (True), or ``timeout`` passed; may
        return early without a change (callers re-read the request either way)."""
        ...


class ApprovalStore(Protocol):
    """Approvers' decisions, each counted against its request atomically."""

    def record_decision(
        self,
        request_id: str,
        approval: ApprovalRecord,
        decide: Callable[[RequestRecord, tuple[str, ...], bool], dict[str, Any]],
        audit: Callable[[DecisionResult], list[AuditRecord]] | None = None,
    ) -> DecisionResult:
        """Record ``approval``; ``decide(request, approvers, counted)`` says what changes
        (``approvers``: who has approved so far), ``audit(result)`` what is audited, in the
        same transaction."""
        ...

    def approvals_for(self, request_id: str) -> list[ApprovalRecord]: ...


class IssuedStore(Protocol):
    """What was issued (correlation ids only), for revocation."""

    def record_issued(self, record: IssuedRecord, audit: AuditRecord | None = None) -> IssuedRecord:
        """Store ``record`` and its audit record together, or neither."""
        ...

    def begin_issue(self, record: IssuedRecord) -> IssuedRecord:
        """The write-ahead (state ``minting``), committed before the upstream call."""
        ...

    def complete_issue(self, record: IssuedRecord, audit: AuditRecord) -> Completion:
        """Complete a write-ahead with the credential's ids, and its audit record, in one
        transaction that reads the freezes in force."""
        ...

    def stale_intents(self, before: float) -> list[IssuedRecord]:
        """Write-aheads begun before ``before`` and never completed."""
        ...

    def stop_in_flight(self, ids: Sequence[int], now: float) -> list[int]:
        """Mark write-aheads still minting revoked; return those it marked."""
        ...

    def issued_by_ids(self, ids: Sequence[int]) -> list[IssuedRecord]: ...

    def mark_orphaned(self, ids: Sequence[int], now: float) -> None: ...

    def active_issued(self, now: float, **reach: Unpack[Reach]) -> list[IssuedRecord]: ...

    def revoked_request_ids(self, now: float) -> list[str]: ...

    def issued_for_request(self, request_id: str) -> list[IssuedRecord]:
        """Every credential issued under ``request_id``, revoked and expired ones too."""
        ...

    def mark_revoked(self, ids: Sequence[int], now: float) -> None: ...


class FreezeStore(Protocol):
    """Kill-switch and circuit-breaker freezes, the same on every replica."""

    def add_freeze(self, record: FreezeRecord, audit: AuditRecord | None = None) -> FreezeRecord:
        """Store ``record`` and its audit record together."""
        ...

    def active_freezes(self, now: float | None = None) -> list[FreezeRecord]:
        """Not lifted, or (given ``now``) lifted only from a time after it."""
        ...

    def lift_freezes(
        self, kind: str, target: str, now: float, audit: AuditRecord | None = None
    ) -> int:
        """Lift from ``now``, which may be in the future (the lift takes effect then), with
        ``audit`` in the same transaction."""
        ...


class CounterStore(Protocol):
    """Sliding-window counts (rate limits, the circuit breaker, one-per-account claims)."""

    def count_and_add(
        self, key: str, window_seconds: float, limit: int | None, now: float
    ) -> tuple[bool, int, float | None]:
        """(added, count before, oldest event in the window); atomic across replicas."""
        ...

    def count(self, key: str, window_seconds: float, now: float) -> int: ...

    def forget(self, keys: Collection[str]) -> None:
        """Drop every event of ``keys``."""
        ...


class TokenStore(Protocol):
    """Single-use marks: a second use is refused on every replica."""

    def use_token(self, jti: str, request_id: str, expires_at: float, now: float) -> bool:
        """True the first time ``jti`` is used, False ever after."""
        ...

    def token_used(self, jti: str) -> bool: ...

    def token_note(self, jti: str) -> str | None:
        """What ``jti`` was used for (its ``request_id`` argument), or None if unused."""
        ...

    def prune(self, now: float) -> None: ...


class AuditStore(Protocol):
    """The hash-chained audit log."""

    def append_audit(self, record: AuditRecord) -> AuditRecord: ...

    def append_audits(self, records: Sequence[AuditRecord]) -> list[AuditRecord]:
        """Many records, in order, in as few transactions as possible."""
        ...

    def subscribe_audit(self, listener: Callable[[AuditRecord], None]) -> None: ...

    def audit_records(
        self,
        since: float | None = None,
        request_id: str | None = None,
        after_seq: int = 0,
        batch: int = 1000,
    ) -> Iterator[AuditRecord]:
        """Records in chain order."""
        ...

    def recent_audit(
        self, actor: str | None = None, limit: int = 20, actions: Sequence[str] = ()
    ) -> list[AuditRecord]:
        """Newest first."""
        ...

    def audit_head(self) -> int: ...

    def audit_head_entry(self) -> tuple[int, str] | None: ...


class LockStore(Protocol):
    """Named locks held on every replica while the holder talks to an upstream (one role's
    revocation policy is read, merged and written by one replica at a time)."""

    def exclusive(self, name: str) -> AbstractContextManager[None]: ...


class Store(
    RequestStore,
    RequestChanges,
    ApprovalStore,
    IssuedStore,
    FreezeStore,
    CounterStore,
    TokenStore,
    AuditStore,
    LockStore,
    Protocol,
):
    """Every aggregate on one database (what the wiring builds)."""

    def ping(self) -> None: ...

    def close(self) -> None: ...
