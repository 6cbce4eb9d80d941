"""Escalations: a write/delete request waits for accountable humans, then is collected once.

State machine of a request (stored, shared by every replica)::

    pending --(required distinct approvals)--> approved --(agent collects)--> collected
       |  \\--(one deny)--> denied                 \\--(collect window passes)--> expired
       \\--(pending expiry)--> expired        (any open state) --(kill switch)--> cancelled

Each arrow is one compare-and-set transition in the store. Whether an approver may decide,
or the agent may collect, is a pure decision (:mod:`broker.policy.decision`) on the rule in
force *now*: who may approve (listed for that tier of that scope), never the requester,
never an agent, how many distinct approvers, the mandatory delay before collection, no
approvals during a change freeze. The grant is exactly what was asked, and its clock starts
when it is collected (through :mod:`broker.issuance`, like every credential). Approvers are
told of each change by :mod:`broker.approvals.notices`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn, Protocol, Unpack

from broker.approvals.collect import Collector, IntentCheck
from broker.approvals.lookups import record_refused_lookup
from broker.approvals.notices import Notices
from broker.approvals.open_requests import open_requests
from broker.approvals.pending import (
    Pending,
    RequestView,
    intent_audit,
    pending_record,
)
from broker.approvals.rules import rule_in_force
from broker.audit.recorder import AuditRecorder
from broker.config import Approver, Settings
from broker.errors import ScopeInvalid
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest
from broker.issuance import IssuanceService, Issued
from broker.metrics import Metrics
from broker.policy.decision import (
    NO_SUCH_REQUEST,
    OPEN_STATES,
    RULE_GONE,
    Ballot,
    Refuse,
    RuleInForce,
    approvals_complete,
    decide_approval,
    late_ballot,
    not_an_approver,
    rule_now,
    second_ballot,
)
from broker.policy.iam_actions import IamDatabase
from broker.policy.requester import SignInIdentity, agent_names_of
from broker.scopes.holder import ScopeHolder
from broker.scopes.model import Approval, Scope
from broker.store.base import ApprovalStore, IssuedStore, RequestChanges, RequestStore
from broker.store.records import (
    ApprovalRecord,
    AuditRecord,
    DecisionResult,
    FreezeRecord,
    Reach,
    RequestRecord,
)

Decision = Ballot
MAX_WAIT_SECONDS = 30


class RequestsStore(RequestStore, ApprovalStore, RequestChanges, IssuedStore, Protocol):
    """Requests, the approvals recorded on them, and their announced changes; what was
    issued under an id (a lookup of another agent's id is audited as such)."""


class ImpactMeasurement(Protocol):
    def start(
        self, identity: AgentIdentity, resolved: ResolvedRequest, record: RequestRecord
    ) -> None:
        """Measure what the request's intent would destroy, for its approvers (background)."""
        ...


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class ApprovalService:
    settings: Settings
    scopes: ScopeHolder
    iam: IamDatabase
    store: RequestsStore
    audit: AuditRecorder
    notices: Notices
    issuance: IssuanceService
    metrics: Metrics
    frozen: Callable[[str, str | None, str | None], FreezeRecord | None]
    clock: Callable[[], float] = time.time
    impact: ImpactMeasurement | None = None
    intent_check: IntentCheck | None = None

    # -- opening ----------------------------------------------------------------------

    def open(
        self, identity: AgentIdentity, resolved: ResolvedRequest, rule: Approval, now: float
    ) -> Pending:
        """Create a pending request and tell its approvers. (Escalations protocol.)"""
        record = pending_record(identity, resolved, now)
        request = resolved.request
        audit = self.audit.build(
            "request",
            "pending",
            identity.principal,
            request_id=record.id,
            **request.audit_fields(),
            resources=list(request.resources),
            justification=request.justification[:500],
            approvals_required=rule.total_required,
            delay=rule.delay_seconds,
            **intent_audit(resolved),
            grant=record.grant,
            grant_sha256=record.grant_sha256,
        )
        self.store.create_request(record, audit)
        self.notices.opened(record, resolved.scope, rule)
        if self.impact is not None:
            self.impact.start(identity, resolved, record)
        return Pending(record, resolved.intent.answer() if resolved.intent else None)

    # -- reading ----------------------------------------------------------------------

    def view(self, record: RequestRecord) -> RequestView:
        approvals = self.store.approvals_for(record.id)
        approvers = tuple(a.approver for a in approvals if a.decision == "approve")
        denied = next((a.approver for a in approvals if a.decision == "deny"), None)
        return RequestView(record, len(approvers), approvers, denied)

    def get(self, request_id: str) -> RequestRecord:
        record = self.store.get_request(request_id)
        if record is None:
            raise NO_SUCH_REQUEST.error()
        return self._expire_if_due(record, self.clock())

    def status(
        self, request_id: str, identity: AgentIdentity, wait: float = 0, operation: str = "status"
    ) -> RequestView:
        """The request as its agent sees it; with ``wait``, long-poll for a change.

        The poll wakes when the store announces a change of this request (a decision on
        any replica), not on a timer; it returns at once for a request that is already
        collectable.
        """
        mark = self.store.change_mark(request_id)  # before reading: no change is missed
        record = self._own(request_id, identity, operation)
        view = self.view(record)
        deadline = time.monotonic() + min(max(wait, 0), MAX_WAIT_SECONDS)
        while record.status in OPEN_STATES and time.monotonic() < deadline:
            if record.status == "approved" and (record.collectable_at or 0) <= self.clock():
                break  # collectable now: nothing more to wait for
            self.store.wait_for_change(request_id, mark, deadline - time.monotonic())
            mark = self.store.change_mark(request_id)
            record = self.get(request_id)
            changed = self.view(record)
            if changed.record.status != view.record.status or (
                changed.approvals_received != view.approvals_received
            ):
                return changed
            view = changed
        return view

    def _own(self, request_id: str, identity: AgentIdentity, operation: str) -> RequestRecord:
        """The request, if ``identity`` made it; else 404 as for an unknown id, audited
        (:mod:`broker.approvals.lookups`)."""
        record = self.store.get_request(request_id)
        if record is None or record.agent_key != identity.key:
            record_refused_lookup(self.store, self.audit, identity, request_id, operation)
            raise NO_SUCH_REQUEST.error()
        return self._expire_if_due(record, self.clock())

    # -- the rule in force ------------------------------------------------------------

    def approver_identity(self, name: str) -> Approver:
        approver = self.settings.approvers.get(name)
        if approver is None:
            raise not_an_approver(name).error()
        return approver

    def rule_in_force(self, record: RequestRecord) -> RuleInForce | None:
        """The scope and rule in force now for ``record``, and who may decide it now."""
        return rule_in_force(self.scopes.current, self.settings, record)

    def eligible(self, record: RequestRecord) -> tuple[Scope, Approval, set[str]]:
        """The scope and rule in force now, and who may approve; 403 when they are gone."""
        rule = self.rule_in_force(record)
        if rule is None:
            raise RULE_GONE.error()
        return rule.scope, rule.rule, set(rule.eligible)

    # -- deciding ---------------------------------------------------------------------

    def decide(
        self,
        request_id: str,
        approver_name: str,
        decision: Decision,
        via: str,
        reason: str = "",
        signed_in: SignInIdentity | None = None,
    ) -> RequestView:
        """Record one approver's decision, enforcing every rule; return the new state.

        ``signed_in``: the approver's verified OIDC sign-in, if they signed in; the
        requesting agent's own identity at that provider may not approve.

        The rules are decided twice: once here for a clear refusal, and the status again
        inside the store's locked transaction, where a decision arriving after the request
        left ``pending`` (another replica counted the last required approval, or a deny
        won) is rolled back: exactly the required number of approvals is ever recorded.
        """
        now = self.clock()
        record = self.get(request_id)
        approver = self.settings.approvers.get(approver_name)
        if approver is None:
            self._refuse(not_an_approver(approver_name), approver_name, record, decision, via)
        self._refuse_second_ballot(record, approver.name, decision, via)
        broken = self.scopes.current.invalid.get(record.service)
        if broken:  # its scope is out of service: nobody approves under a broken file
            invalid = ScopeInvalid(record.service, [p.in_file() for p in broken])
            self._refuse(Refuse("conflict", invalid.message), approver.name, record, decision, via)
        in_force = self.rule_in_force(record)
        as_agents = agent_names_of(signed_in, self.settings.identity.oidc)
        verdict = decide_approval(record, approver, decision, via, in_force, now, as_agents)
        if isinstance(verdict, Refuse):
            self._refuse(verdict, approver.name, record, decision, via)
        assert in_force is not None  # decide_approval refuses when the rule is gone
        window = self.settings.approvals.collect_window_seconds
        # The rule it needs now (never looser than the one it was opened under), and the
        # earlier approvals of people who may no longer approve, which do not count.
        earlier = self.view(record).approvers
        needs = rule_now(record, in_force, earlier)

        def apply(
            current: RequestRecord, approvers: tuple[str, ...], counted: bool
        ) -> dict[str, Any]:
            if not counted:
                return {}  # this approver already decided: a double click changes nothing
            late = late_ballot(current, decision)
            if late is not None:
                raise _Late(late)  # rolls the transaction back: the ballot is not recorded
            if decision == "deny":
                return {
                    "status": "denied",
                    "decided_at": now,
                    "reason": f"denied by {approver.name}" + (f": {reason}" if reason else ""),
                }
            stricter: dict[str, Any] = {}
            if needs.required != current.approvals_required:
                stricter["approvals_required"] = needs.required
            if needs.delay_seconds != current.delay_seconds:
                stricter["delay_seconds"] = needs.delay_seconds
            if stricter and needs.tightened:
                stricter["reason"] = needs.reason(current)  # what the agent's poll shows
            if current.status == "pending" and approvals_complete(needs, in_force, approvers):
                return {
                    **stricter,
                    "status": "approved",
                    "approved_at": now,
                    "collect_deadline": now + needs.delay_seconds + window,
                }
            return stricter

        def audited(result: DecisionResult) -> list[AuditRecord]:
            """The ballot's record and, if it changed the status, that change's."""
            if not result.counted:
                return []
            recorded = self.audit.build_request_event(
                decision,
                "recorded",
                f"approver:{approver.name}",
                record,
                reason=reason[:500],
                via=via,
                approvals=result.approvals,
                required=result.request.approvals_required,
            )
            if result.request.status == record.status:
                return [recorded]
            return [recorded, self._status_record(result.request, result.approvals)]

        ballot = ApprovalRecord(record.id, approver.name, decision, via, now)
        try:
            result = self.store.record_decision(record.id, ballot, apply, audited)
        except _Late as late:
            self._refuse(late.refusal, approver.name, record, decision, via)
        if not result.counted:  # a double click that raced the first one
            self._refuse_second_ballot(record, approver.name, decision, via)
        updated = result.request
        if result.counted:
            self.metrics.approvals.labels(decision=decision).inc()
            if updated.status != record.status:
                self._status_told(updated, result.approvals)
            else:
                # Still waiting: show the approvals so far on the Slack message.
                self.notices.updated(updated, result.approvals)
        return self.view(updated)

    def _refuse_second_ballot(
        self, record: RequestRecord, approver: str, decision: Decision, via: str
    ) -> None:
        """An approver decides once: a second ballot is refused, saying the first counts."""
        first = next(
            (a for a in self.store.approvals_for(record.id) if a.approver == approver), None
        )
        if first is not None:
            self._refuse(second_ballot(first), approver, record, decision, via)

    def _refuse(
        self, refusal: Refuse, actor: str, record: RequestRecord, decision: Decision, via: str
    ) -> NoReturn:
        self.audit.request_event(
            decision,
            "refused",
            f"approver:{actor}",
            record,
            reason=refusal.reason,
            via=via,
        )
        raise refusal.error()

    def _status_record(self, record: RequestRecord, approvals: int) -> AuditRecord:
        """The audit record of ``record``'s new status, committed with the change."""
        return self.audit.build_request_event(
            "request",
            record.status,
            "broker",
            record,
            reason=record.reason or "",
            approvals=approvals,
            collectable_at=record.collectable_at,
            collect_deadline=record.collect_deadline,
        )

    def _status_told(self, record: RequestRecord, approvals: int) -> None:
        """After a status change committed: its metric, and the approvers' message."""
        if record.status == "approved":
            self.metrics.approval_latency.observe(
                max(0.0, (record.approved_at or 0) - record.created_at)
            )
        self.notices.updated(record, approvals)

    # -- collecting -------------------------------------------------------------------

    def collect(self, request_id: str, identity: AgentIdentity) -> Issued:
        """Hand the approved credentials to the requesting agent, once."""
        return Collector(self).collect(request_id, identity)

    def expire_if_due(self, record: RequestRecord, now: float) -> RequestRecord:
        """``record``, expired first when it is overdue (pending or approved)."""
        return self._expire_if_due(record, now)

    # -- expiry and cancellation ------------------------------------------------------

    def _expire_if_due(self, record: RequestRecord, now: float) -> RequestRecord:
        due = (record.status == "pending" and now >= record.expires_at) or (
            record.status == "approved"
            and record.collect_deadline is not None
            and now >= record.collect_deadline
        )
        if not due:
            return record
        approvals = self.view(record).approvals_received
        audit = self._status_record(replace(record, status="expired", decided_at=now), approvals)
        expired = self.store.transition(
            record.id, [record.status], audit=audit, status="expired", decided_at=now
        )
        if expired is None:
            return self.store.get_request(record.id) or record
        self._status_told(expired, approvals)
        return expired

    def sweep(self) -> int:
        """Expire every overdue request (run periodically; each replica may run it)."""
        now = self.clock()
        count = 0
        for record in self.store.requests_due(now):
            if self._expire_if_due(record, now).status == "expired":
                count += 1
        return count

    def cancel(
        self, record: RequestRecord, states: Sequence[str], actor: str, reason: str, now: float
    ) -> RequestRecord | None:
        """End ``record`` as cancelled, with its audit record, if it is still in one of
        ``states``; None when it had moved on."""
        audit = self.audit.build_request_event("request", "cancelled", actor, record, reason=reason)
        return self.store.transition(
            record.id, list(states), audit=audit, status="cancelled", decided_at=now, reason=reason
        )

    def cancel_open(self, reason: str, actor: str, **reach: Unpack[Reach]) -> list[RequestRecord]:
        """Cancel the open requests ``reach`` names (the kill switch)."""
        cancelled = []
        for record in open_requests(self.store, reach, limit=10_000):
            updated = self.cancel(record, OPEN_STATES, actor, reason, self.clock())
            if updated is not None:
                cancelled.append(updated)
                self.notices.updated(updated, self.view(updated).approvals_received)
        return cancelled


class _Late(Exception):
    """A ballot refused inside the store's transaction (raising rolls it back)."""

    def __init__(self, refusal: Refuse) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal
