"""Collection: an approved request's credentials, handed to its agent once.

The sequence: the request is the agent's and collectable now (decision.decide_collection),
the scope resolves it again, the approval rule in force still holds (or the request goes
back under the stricter one: :class:`broker.approvals.collection.RuleKeeper`), the stored
grant is what is issued (or its intersection with the scope now), and the claim of the
request commits with the write-ahead of the credential. A collection that fails after its
claim ends the request: collecting again would mint a second credential for one approval,
and whatever the first attempt minted is revoked (at once, or by the reconciler).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from broker.approvals.collection import RuleKeeper, issuable_grant
from broker.approvals.lookups import record_refused_lookup
from broker.approvals.notices import Notices
from broker.approvals.pending import RequestView, requested
from broker.audit.recorder import AuditRecorder
from broker.config import Settings
from broker.errors import BrokerError
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest, resolve
from broker.issuance import IssuanceService, Issued
from broker.policy.decision import (
    ALREADY_COLLECTED,
    NO_SUCH_REQUEST,
    RULE_GONE,
    Deny,
    RuleInForce,
    collection_window_refusal,
    decide_collection,
    intent_tier_changed,
    scope_changed,
)
from broker.policy.iam_actions import IamDatabase
from broker.scopes.holder import ScopeHolder
from broker.store.base import ApprovalStore, IssuedStore, RequestStore
from broker.store.records import FreezeRecord, IssuedRecord, RequestRecord


class Approvals(Protocol):
    """What a collection uses of the approval service (which implements it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def scopes(self) -> ScopeHolder: ...

    @property
    def iam(self) -> IamDatabase: ...

    @property
    def store(self) -> CollectionStore: ...

    @property
    def audit(self) -> AuditRecorder: ...

    @property
    def notices(self) -> Notices: ...

    @property
    def issuance(self) -> IssuanceService: ...

    @property
    def frozen(self) -> Callable[[str, str | None, str | None], FreezeRecord | None]: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def intent_check(self) -> IntentCheck | None: ...

    def view(self, record: RequestRecord) -> RequestView: ...

    def rule_in_force(self, record: RequestRecord) -> RuleInForce | None: ...

    def expire_if_due(self, record: RequestRecord, now: float) -> RequestRecord: ...

    def cancel(
        self, record: RequestRecord, states: Sequence[str], actor: str, reason: str, now: float
    ) -> RequestRecord | None: ...


class IntentCheck(Protocol):
    def verify(self, identity: AgentIdentity, resolved: ResolvedRequest) -> None:
        """Refuse when what the intent describes is no longer what would happen."""
        ...


class CollectionStore(RequestStore, ApprovalStore, IssuedStore, Protocol):
    """Requests to read, claim and end, the approvals on them, what was issued under them."""


@dataclass(eq=False, repr=False)  # a use case: no generated equality or repr
class Collector:
    """One collection, on the approval service's store, scopes, notices and issuance."""

    approvals: Approvals

    def collect(self, request_id: str, identity: AgentIdentity) -> Issued:
        """Hand the approved credentials to the requesting agent, once."""
        svc = self.approvals
        now = svc.clock()
        record = svc.store.get_request(request_id)
        if record is None or record.agent_key != identity.key:
            # Another agent's request reads as an unknown one (broker.approvals.lookups).
            record_refused_lookup(svc.store, svc.audit, identity, request_id, "collect")
            raise NO_SUCH_REQUEST.error()
        record = svc.expire_if_due(record, now)
        approvals = svc.view(record).approvals_received if record.status == "pending" else 0
        # Only an approved request gets as far as the freezes: read them for that one.
        freeze = (
            svc.frozen(identity.principal, record.service, record.environment)
            if record.status == "approved"
            else None
        )
        verdict = decide_collection(record, approvals, freeze, now)
        if isinstance(verdict, Deny):
            raise verdict.error()
        resolved = self._resolve_again(record, identity, now)
        try:
            if svc.intent_check is not None:
                svc.intent_check.verify(identity, resolved)
            self._hold_to_the_rule(record, now)
            issuable = issuable_grant(record, resolved.grant)
            if isinstance(issuable, Deny):
                raise issuable.error()
        except BrokerError as e:
            svc.audit.request_event(
                "collect", "refused", identity.principal, record, reason=e.message
            )
            raise
        collected = svc.audit.build_request_event(
            "collect",
            "collected",
            identity.principal,
            record,
            grant_sha256=record.grant_sha256,
            issued_sha256=issuable.grant.sha256,
            narrowed=issuable.narrowed or None,
        )
        claims: list[RequestRecord] = []

        def claim(intent: IssuedRecord) -> IssuedRecord:
            """The claim and the write-ahead of what it mints, in one transaction."""
            changes = {"status": "collected", "collected_at": now}
            claimed, stored = svc.store.claim(record.id, ["approved"], changes, intent, collected)
            if claimed is None or stored is None:
                raise ALREADY_COLLECTED.error()
            claims.append(claimed)
            return stored

        granted = replace(resolved, grant=issuable.grant)
        try:
            issued = svc.issuance.issue(identity, granted, record.id, False, begin=claim)
        except BrokerError as e:
            if claims:  # claimed: never collectable again (whatever was minted is revoked)
                self._failed_collection(claims[0], e, now)
            raise
        claimed = claims[0]
        svc.notices.updated(claimed, svc.view(claimed).approvals_received)
        return issued

    def _failed_collection(self, record: RequestRecord, error: BrokerError, now: float) -> None:
        """A claimed collection that handed nothing out ends the request: collecting again
        would mint a second credential for one approval."""
        svc = self.approvals
        reason = (
            f"collection failed ({error.message}); nothing was handed out and anything minted "
            "is revoked; open a new request"
        )
        cancelled = svc.cancel(record, ["collected"], "broker", reason, now)
        if cancelled is not None:
            svc.notices.updated(cancelled, svc.view(cancelled).approvals_received)

    def _hold_to_the_rule(self, record: RequestRecord, now: float) -> None:
        """An approved request meets the scope's rule in force now, or goes back under it
        (pending, or approved again with its delay starting over) and the agent is told."""
        svc = self.approvals
        in_force = svc.rule_in_force(record)
        if in_force is None:
            raise RULE_GONE.error()
        window = svc.settings.approvals.collect_window_seconds
        keeper = RuleKeeper(svc.store, svc.audit, svc.notices, window)
        keeper.hold(record, in_force, svc.view(record).approvers, now)

    def _resolve_again(
        self, record: RequestRecord, identity: AgentIdentity, now: float
    ) -> ResolvedRequest:
        """Exactly what was approved, checked against the scope in force now."""
        svc = self.approvals
        try:
            resolved = resolve(requested(record), svc.scopes.current, identity, svc.iam)
        except BrokerError as e:
            raise scope_changed(e).error() from e
        if resolved.request.tier != record.tier:
            # The intent's grant now needs another tier (the scope moved an action): what
            # was approved under one rule is not issued under another.
            raise intent_tier_changed(record.tier, resolved.request.tier).error()
        refused = collection_window_refusal(resolved, record, now)
        if refused is not None:
            raise refused.error()
        return resolved
