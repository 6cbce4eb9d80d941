"""What an approved request may still be issued at collection: the grant approvers approved,
under the rule they approved it under, against the scope in force now.

- :func:`issuable_grant`: the stored grant, read back and checked against its SHA-256; if
  the scope changed since, its intersection with what the scope grants now (never more);
  refused when nothing of it is left.
- :func:`fallback_changes`: when the scope's approval rule became stricter (more approvers,
  other groups, a longer delay), the request goes back to ``pending`` under it, or is
  approved again at once (its delay starting over) when its approvals still suffice;
  :class:`RuleKeeper` stores that change, audits it and tells the approvers.

Both functions are pure; the keeper does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from broker.approvals.notices import Notices
from broker.audit.recorder import AuditRecorder
from broker.policy.decision import Deny, RuleInForce, RuleNow, rule_now
from broker.policy.grant import Grant, grant_from_json
from broker.policy.narrowing import narrowed
from broker.store.base import RequestStore
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class Issuable:
    """The grant to issue, and whether it is narrower than the one approved."""

    grant: Grant
    stored_sha256: str | None  # None: a request stored before grants were

    @property
    def narrowed(self) -> bool:
        return self.stored_sha256 is not None and self.grant.sha256 != self.stored_sha256


def issuable_grant(record: RequestRecord, current: Grant) -> Issuable | Deny:
    """The grant approvers approved, within what the scope grants now."""
    if record.grant is None:
        return Issuable(current, None)  # stored before grants were: the scope's, as then
    try:
        stored = grant_from_json(record.grant)
    except ValueError:
        stored = None
    if stored is None or stored.sha256 != record.grant_sha256:
        return Deny(
            "forbidden",
            "the stored grant does not match the SHA-256 its approvers saw; nothing is issued",
        )
    grant = narrowed(stored, current)
    if grant.empty:
        return Deny(
            "forbidden",
            "the scope changed since approval and no longer grants any of what was approved",
        )
    return Issuable(grant, record.grant_sha256)


def fallback_changes(
    record: RequestRecord, needs: RuleNow, now: float, pending_expiry: int, window: int
) -> tuple[dict[str, Any], Deny]:
    """The request's changes under the stricter rule, and what the agent is told."""
    reason = needs.reason(record)
    changes: dict[str, Any] = {
        "approvals_required": needs.required,
        "delay_seconds": needs.delay_seconds,
        "reason": reason,
    }
    if needs.satisfied:
        changes.update(
            status="approved",
            approved_at=now,
            collect_deadline=now + needs.delay_seconds + window,
        )
        told = f"{reason}; approved again, collectable in {math.ceil(needs.delay_seconds)} s"
    else:
        changes.update(
            status="pending",
            approved_at=None,
            collect_deadline=None,
            expires_at=now + pending_expiry,
        )
        told = f"{reason}; back to pending, waiting for {needs.still_needed()}"
    return changes, Deny("not_ready", told)


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class RuleKeeper:
    """Holds an approved request to the rule in force when it is collected."""

    store: RequestStore
    audit: AuditRecorder
    notices: Notices
    collect_window_seconds: int

    def hold(
        self, record: RequestRecord, in_force: RuleInForce, approvers: Sequence[str], now: float
    ) -> None:
        """Return when the rule still holds; else move the request under the stricter rule
        (compare-and-set), audit it, tell the approvers, and refuse the collection."""
        needs = rule_now(record, in_force, approvers)
        if needs.tightened:
            self._fall_back(record, in_force, needs, now)

    def _fall_back(
        self, record: RequestRecord, in_force: RuleInForce, needs: RuleNow, now: float
    ) -> NoReturn:
        expiry = in_force.rule.pending_expiry_seconds
        changes, told = fallback_changes(record, needs, now, expiry, self.collect_window_seconds)
        audit = self.audit.build_request_event(
            "request",
            changes["status"],
            "broker",
            record,
            reason=changes["reason"],
            approvals=needs.counted,
            required=needs.required,
            delay=needs.delay_seconds,
        )
        updated = self.store.transition(record.id, ["approved"], audit=audit, **changes)
        if updated is None:
            raise Deny("conflict", "the request changed meanwhile; ask for its state again").error()
        self.notices.updated(updated, needs.counted)
        raise told.error()
