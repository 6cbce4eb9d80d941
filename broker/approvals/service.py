"""Escalations: a write/delete request waits for accountable humans, then is collected once.

State machine of a request (stored, shared by every replica)::

    pending --(required distinct approvals)--> approved --(agent collects)--> collected
       |  \\--(one deny)--> denied                 \\--(collect window passes)--> expired
       \\--(pending expiry)--> expired        (any open state) --(kill switch)--> cancelled

Every rule is enforced here, on the server, at the moment of the decision: who may approve
(listed for that tier of that scope *now*), never the requester, never an agent, how many
distinct approvers, the mandatory delay before collection, no approvals during a change
freeze. The grant is exactly what was asked, and its clock starts when it is collected.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from broker.approvals.difference import aws_additions, set_additions
from broker.approvals.links import LinkSigner
from broker.audit.recorder import AuditRecorder
from broker.config import Approver, Settings
from broker.credentials import Issued, Pending
from broker.errors import (
    BrokerError,
    ChangeFreeze,
    Conflict,
    Forbidden,
    Frozen,
    Gone,
    NotFound,
    RequestNotReady,
)
from broker.guard.windows import active_window, describe_window
from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import CredentialRequest, ResolvedRequest, resolve
from broker.metrics import Metrics
from broker.notify.base import ApprovalNotice, NotificationFailed, Notifier
from broker.policy.compiler import session_policy, vault_policy
from broker.policy.grants import database_grants, vault_grants
from broker.policy.iam_actions import IamDatabase
from broker.scopes.holder import ScopeHolder
from broker.scopes.model import Approval, Scope, TierName
from broker.store.base import ApprovalStore, AuditStore, RequestStore
from broker.store.records import ApprovalRecord, RequestRecord

log = logging.getLogger(__name__)

Decision = Literal["approve", "deny"]
OPEN_STATES = ("pending", "approved")
MAX_WAIT_SECONDS = 30
POLL_INTERVAL_SECONDS = 0.25


@dataclass(frozen=True)
class RequestView:
    """A request as its agent (or an approver) sees it."""

    record: RequestRecord
    approvals_received: int
    approvers: tuple[str, ...]
    denied_by: str | None


class ApprovalServiceStore(RequestStore, ApprovalStore, AuditStore, Protocol):
    """Requests and their approvals; the audit log for the agent's history."""


class ApprovalService:
    def __init__(
        self,
        settings: Settings,
        scopes: ScopeHolder,
        iam: IamDatabase,
        store: ApprovalServiceStore,
        audit: AuditRecorder,
        notifier: Notifier,
        links: LinkSigner,
        metrics: Metrics,
        frozen: Callable[[str, str | None, str | None], object | None],
        issue: Callable[[AgentIdentity, ResolvedRequest, str | None, bool], Issued],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.scopes = scopes
        self.iam = iam
        self.store = store
        self.audit = audit
        self.notifier = notifier
        self.links = links
        self.metrics = metrics
        self.frozen = frozen
        self.issue = issue
        self.clock = clock
        self.sleep = sleep

    # -- opening ----------------------------------------------------------------------

    def open(
        self,
        identity: AgentIdentity,
        resolved: ResolvedRequest,
        now: float,
        break_glass: bool = False,
    ) -> Pending:
        """Create a pending request and tell its approvers. (Escalations protocol.)"""
        record = pending_record(identity, resolved, now, break_glass=break_glass)
        request = resolved.request
        rule = resolved.tier.approval
        assert rule is not None
        self.store.create_request(record)
        self.audit.record(
            "request",
            "pending",
            identity.subject,
            request_id=record.id,
            **request.audit_fields(),
            resources=list(request.resources),
            justification=request.justification[:500],
            approvals_required=rule.required,
            delay=rule.delay_seconds,
        )
        self._notify_opened(record, resolved.scope, rule)
        return Pending(record)

    def _notify_opened(self, record: RequestRecord, scope: Scope, rule: Approval) -> None:
        notice = self.notice(record, scope, rule, approvals_received=0)
        try:
            handle = self.notifier.request_opened(notice)
        except Exception as e:  # noqa: BLE001 - notifications are best effort
            # A notifier bug must not turn a stored request (or, on collection, credentials
            # already issued) into a 500; only the exception's type is logged, since a
            # third-party message could quote a URL or token.
            reason = str(e) if isinstance(e, NotificationFailed) else type(e).__name__
            if not isinstance(e, NotificationFailed):
                log.error("notifier crashed: %s", reason, extra={"request_id": record.id})
            self.audit.record(
                "notify",
                "failed",
                "broker",
                reason=reason,
                request_id=record.id,
                service=record.service,
                tier=record.tier,
            )
            return
        if handle:
            self.store.set_notification(record.id, dict(handle))
        self.audit.record(
            "notify",
            "sent",
            "broker",
            request_id=record.id,
            service=record.service,
            tier=record.tier,
            channel=(handle or {}).get("channel"),
        )

    def notice(
        self, record: RequestRecord, scope: Scope, rule: Approval, approvals_received: int
    ) -> ApprovalNotice:
        approvers = self.settings.approvers_for(rule.approvers, rule.groups)
        direct = tuple(
            a.slack_user_id
            for name in sorted(approvers)
            if (a := self.settings.approvers[name]).notify_directly and a.slack_user_id
        )
        return ApprovalNotice(
            request_id=record.id,
            agent=record.agent_subject,
            agent_claims=record.agent_claims,
            service=record.service,
            environment=record.environment,
            region=record.region,
            tier=record.tier,
            backend=record.backend,
            justification=record.justification,
            resources=record.resources,
            adds=self.permission_difference(record, scope),
            duration_seconds=record.duration_seconds,
            approvals_required=record.approvals_required,
            approvals_received=approvals_received,
            delay_seconds=record.delay_seconds,
            page_url=f"{self.settings.public_url}/requests/{record.id}",
            channel=rule.channel or self.settings.slack.default_channel,
            slack_approval=rule.allow_slack_approval,
            direct_slack_users=direct,
        )

    def permission_difference(self, record: RequestRecord, scope: Scope) -> tuple[str, ...]:
        """What the request adds to the read tier, in words: 'adds s3:PutObject on ...'."""
        env = scope.environments.get(record.environment)
        tier: TierName = record.tier  # type: ignore[assignment]
        if env is None or tier not in scope.tiers:
            return ()
        if record.backend == "aws" and env.aws is not None and record.region:
            try:
                granted = session_policy(
                    scope, env, record.region, tier, self.iam, record.resources
                )
                baseline = session_policy(scope, env, record.region, "read", self.iam)
            except BrokerError:
                return ()
            # Coverage, not string equality: the request's resources narrow the tier's
            # patterns, and a narrowed read action is not an addition.
            return aws_additions(granted, baseline)
        if record.backend == "vault":
            return set_additions(
                vault_grants(vault_policy(scope, env, tier)),
                vault_grants(vault_policy(scope, env, "read")),
            )
        return set_additions(database_grants(scope, env, tier), database_grants(scope, env, "read"))

    # -- reading ----------------------------------------------------------------------

    def view(self, record: RequestRecord) -> RequestView:
        approvals = self.store.approvals_for(record.id)
        approvers = tuple(a.approver for a in approvals if a.decision == "approve")
        denied = next((a.approver for a in approvals if a.decision == "deny"), None)
        return RequestView(record, len(approvers), approvers, denied)

    def get(self, request_id: str) -> RequestRecord:
        record = self.store.get_request(request_id)
        if record is None:
            raise NotFound("no such request")
        return self._expire_if_due(record, self.clock())

    def status(self, request_id: str, identity: AgentIdentity, wait: float = 0) -> RequestView:
        """The request as its agent sees it; with ``wait``, long-poll for a change."""
        record = self._own(request_id, identity)
        view = self.view(record)
        deadline = time.monotonic() + min(max(wait, 0), MAX_WAIT_SECONDS)
        while record.status in OPEN_STATES and time.monotonic() < deadline:
            self.sleep(POLL_INTERVAL_SECONDS)
            record = self.get(request_id)
            changed = self.view(record)
            if changed.record.status != view.record.status or (
                changed.approvals_received != view.approvals_received
            ):
                return changed
            view = changed
        return view

    def _own(self, request_id: str, identity: AgentIdentity) -> RequestRecord:
        """The request, if ``identity`` made it; 404 otherwise (no leak of other agents')."""
        record = self.store.get_request(request_id)
        if record is None or record.agent_key != identity.key:
            raise NotFound("no such request")
        return self._expire_if_due(record, self.clock())

    # -- deciding ---------------------------------------------------------------------

    def approver_identity(self, name: str) -> Approver:
        approver = self.settings.approvers.get(name)
        if approver is None:
            raise Forbidden(f"'{name}' is not a configured approver")
        return approver

    def eligible(self, record: RequestRecord) -> tuple[Scope, Approval, set[str]]:
        """The scope and rule in force now, and who may approve this request now."""
        scope = self.scopes.current.get(record.service)
        tier = scope.tiers.get(record.tier) if scope else None  # type: ignore[call-overload]
        if scope is None or tier is None or tier.approval is None:
            raise Forbidden("the scope or tier of this request no longer exists")
        rule = tier.approval
        return scope, rule, self.settings.approvers_for(rule.approvers, rule.groups)

    def decide(
        self, request_id: str, approver_name: str, decision: Decision, via: str, reason: str = ""
    ) -> RequestView:
        """Record one approver's decision, enforcing every rule; return the new state.

        The checks run twice: once here for a clear refusal, and the status again inside
        the store's locked transaction, where a decision arriving after the request left
        ``pending`` (another replica counted the last required approval, or a deny won) is
        rolled back: exactly the required number of approvals is ever recorded.
        """
        now = self.clock()
        action = "approve" if decision == "approve" else "deny"
        record = self.get(request_id)

        def audit_refusal(actor: str, e: BrokerError) -> None:
            self.audit.record(
                action,
                "refused",
                f"approver:{actor}",
                reason=e.message,
                request_id=record.id,
                service=record.service,
                environment=record.environment,
                tier=record.tier,
                via=via,
            )

        try:
            approver = self.approver_identity(approver_name)
        except BrokerError as e:
            audit_refusal(approver_name, e)
            raise
        window = self.settings.approvals.collect_window_seconds

        def apply(current: RequestRecord, approvals: int, counted: bool) -> dict[str, Any]:
            if not counted:
                return {}  # this approver already decided: a double click changes nothing
            if current.status not in OPEN_STATES or (
                decision == "approve" and current.status != "pending"
            ):
                # Raising rolls the transaction back: the late decision is not recorded.
                raise Conflict(f"this request is already {current.status}")
            if decision == "deny":
                return {
                    "status": "denied",
                    "decided_at": now,
                    "reason": f"denied by {approver.name}" + (f": {reason}" if reason else ""),
                }
            if current.status == "pending" and approvals >= current.approvals_required:
                return {
                    "status": "approved",
                    "approved_at": now,
                    "collect_deadline": now + current.delay_seconds + window,
                }
            return {}

        try:
            self._check_decision(record, approver, decision, via, now)
            result = self.store.record_decision(
                record.id,
                ApprovalRecord(
                    request_id=record.id,
                    approver=approver.name,
                    decision=decision,
                    via=via,
                    created_at=now,
                ),
                apply,
            )
        except (Forbidden, Conflict) as e:
            audit_refusal(approver.name, e)
            raise
        updated = result.request
        if result.counted:
            self.metrics.approvals.labels(decision=decision).inc()
            self.audit.record(
                "approve" if decision == "approve" else "deny",
                "recorded",
                f"approver:{approver.name}",
                reason=reason[:500],
                request_id=record.id,
                service=record.service,
                environment=record.environment,
                tier=record.tier,
                via=via,
                approvals=result.approvals,
                required=record.approvals_required,
            )
            if updated.status != record.status:
                self._status_changed(updated, result.approvals)
            else:
                # Still waiting: show the approvals so far on the Slack message.
                self._notify_updated(updated, result.approvals)
        return self.view(updated)

    def _check_decision(
        self, record: RequestRecord, approver: Approver, decision: Decision, via: str, now: float
    ) -> None:
        if record.status not in OPEN_STATES:
            raise Conflict(f"this request is already {record.status}")
        scope, rule, eligible = self.eligible(record)
        if _is_requester(approver, record):
            raise Forbidden("the requester cannot approve its own request")
        if approver.name not in eligible:
            raise Forbidden(
                f"{approver.name} is not an approver for tier {record.tier} of {record.service}"
            )
        if record.break_glass and decision == "approve" and via != "break-glass":
            # A link or a Slack click proves no OS user: break-glass takes two on the CLI.
            raise Forbidden("break-glass requests are approved with `broker break-glass approve`")
        if via == "slack" and decision == "approve" and not rule.allow_slack_approval:
            raise Forbidden(
                f"tier {record.tier} of {record.service} cannot be approved inside "
                "Slack; use the approval page"
            )
        if decision == "approve" and not record.break_glass:
            window = active_window(scope, record.tier, now)
            if window is not None:
                raise ChangeFreeze(
                    f"approvals are refused during change freeze {describe_window(window)}",
                    window.name,
                )

    def _status_changed(self, record: RequestRecord, approvals: int) -> None:
        if record.status == "approved":
            self.metrics.approval_latency.observe(
                max(0.0, (record.approved_at or 0) - record.created_at)
            )
        self.audit.record(
            "request",
            record.status,
            "broker",
            reason=record.reason or "",
            request_id=record.id,
            service=record.service,
            environment=record.environment,
            tier=record.tier,
            approvals=approvals,
            collectable_at=record.collectable_at,
            collect_deadline=record.collect_deadline,
        )
        self._notify_updated(record, approvals)

    def _notify_updated(self, record: RequestRecord, approvals: int) -> None:
        scope = self.scopes.current.get(record.service)
        tier = scope.tiers.get(record.tier) if scope else None  # type: ignore[call-overload]
        if scope is None or tier is None or tier.approval is None:
            return
        notice = self.notice(record, scope, tier.approval, approvals)
        detail = {
            "pending": f"{approvals} of {record.approvals_required} approvals so far",
            "approved": "approved"
            + (
                f"; collectable after a {record.delay_seconds}s delay"
                if record.delay_seconds
                else ""
            ),
            "denied": record.reason or "denied",
            "expired": "expired before anyone decided",
            "collected": "credentials collected by the agent",
            "cancelled": record.reason or "cancelled",
        }.get(record.status, record.status)
        try:
            self.notifier.request_updated(notice, record.status, detail, record.notification)
        except NotificationFailed as e:
            self.audit.record("notify", "failed", "broker", reason=str(e), request_id=record.id)
        except Exception as e:  # noqa: BLE001 - see _notify_opened
            log.error("notifier crashed: %s", type(e).__name__, extra={"request_id": record.id})
            self.audit.record(
                "notify", "failed", "broker", reason=type(e).__name__, request_id=record.id
            )

    # -- collecting -------------------------------------------------------------------

    def collect(self, request_id: str, identity: AgentIdentity) -> Issued:
        """Hand the approved credentials to the requesting agent, once."""
        now = self.clock()
        record = self.store.get_request(request_id)
        if record is None:
            raise NotFound("no such request")
        if record.agent_key != identity.key:
            self.audit.record(
                "collect",
                "refused",
                identity.subject,
                reason="not the requesting agent",
                request_id=record.id,
            )
            raise Forbidden("only the agent that made a request can collect its credentials")
        record = self._expire_if_due(record, now)
        self._check_collectable(record, now)
        if self.frozen(identity.subject, record.service, record.environment) is not None:
            raise Frozen("frozen: nothing is issued until an operator runs `broker unfreeze`")
        resolved = self._resolve_again(record, identity, now)
        claimed = self.store.transition(
            record.id, ["approved"], status="collected", collected_at=now
        )
        if claimed is None:
            raise Gone("these credentials were already collected")
        try:
            issued = self.issue(identity, resolved, record.id, False)
        except BrokerError:
            # Nothing was handed out: give the agent another chance within the window.
            self.store.transition(record.id, ["collected"], status="approved", collected_at=None)
            raise
        self.audit.record(
            "collect",
            "collected",
            identity.subject,
            request_id=record.id,
            service=record.service,
            environment=record.environment,
            tier=record.tier,
        )
        self._notify_updated(claimed, self.view(claimed).approvals_received)
        return issued

    def _check_collectable(self, record: RequestRecord, now: float) -> None:
        if record.status == "pending":
            view = self.view(record)
            raise RequestNotReady(
                f"waiting for approvals ({view.approvals_received} of {record.approvals_required})"
            )
        if record.status == "denied":
            raise Forbidden(record.reason or "this request was denied")
        if record.status == "collected":
            raise Gone("these credentials were already collected")
        if record.status in ("expired", "cancelled"):
            raise Gone(f"this request is {record.status}")
        collectable_at = record.collectable_at or now
        if now < collectable_at:
            raise RequestNotReady(
                f"approved; the mandatory delay ends in {math.ceil(collectable_at - now)} s"
            )

    def _resolve_again(
        self, record: RequestRecord, identity: AgentIdentity, now: float
    ) -> ResolvedRequest:
        """Exactly what was approved, checked against the scope in force now."""
        request = CredentialRequest(
            service=record.service,
            environment=record.environment,
            region=record.region,
            tier=record.tier,  # type: ignore[arg-type]
            backend=record.backend,  # type: ignore[arg-type]
            resources=record.resources,
            duration=record.duration_seconds,
            justification=record.justification,
        )
        try:
            resolved = resolve(request, self.scopes.current, identity, self.iam)
        except BrokerError as e:
            raise Forbidden(
                f"the scope changed since approval and no longer grants this request: {e.message}"
            ) from e
        if not record.break_glass:
            window = active_window(resolved.scope, record.tier, now)
            if window is not None:
                raise ChangeFreeze(
                    f"change freeze {describe_window(window)} is in effect", window.name
                )
        return resolved

    # -- expiry -----------------------------------------------------------------------

    def _expire_if_due(self, record: RequestRecord, now: float) -> RequestRecord:
        due = (record.status == "pending" and now >= record.expires_at) or (
            record.status == "approved"
            and record.collect_deadline is not None
            and now >= record.collect_deadline
        )
        if not due:
            return record
        expired = self.store.transition(
            record.id, [record.status], status="expired", decided_at=now
        )
        if expired is None:
            return self.store.get_request(record.id) or record
        self._status_changed(expired, self.view(expired).approvals_received)
        return expired

    def sweep(self) -> int:
        """Expire every overdue request (run periodically; each replica may run it)."""
        now = self.clock()
        count = 0
        for record in self.store.requests_due(now):
            if self._expire_if_due(record, now).status == "expired":
                count += 1
        return count

    def cancel_open(
        self,
        reason: str,
        actor: str,
        agent_subject: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        request_id: str | None = None,
    ) -> list[RequestRecord]:
        """Cancel open requests (the kill switch)."""
        if request_id is not None:
            found = self.store.get_request(request_id)
            candidates = [found] if found and found.status in OPEN_STATES else []
        else:
            candidates = self.store.list_requests(
                agent_subject=agent_subject,
                service=service,
                environment=environment,
                statuses=OPEN_STATES,
                limit=10_000,
            )
        cancelled = []
        for record in candidates:
            updated = self.store.transition(
                record.id,
                list(OPEN_STATES),
                status="cancelled",
                decided_at=self.clock(),
                reason=reason,
            )
            if updated is not None:
                cancelled.append(updated)
                self.audit.record(
                    "request",
                    "cancelled",
                    actor,
                    reason=reason,
                    request_id=updated.id,
                    service=updated.service,
                    environment=updated.environment,
                    tier=updated.tier,
                )
                self._notify_updated(updated, self.view(updated).approvals_received)
        return cancelled

    def recent_history(
        self, agent_subject: str, limit: int = 8, exclude: str | None = None
    ) -> list[Mapping[str, Any]]:
        """The agent's last requests and what became of them, newest first (approval page).

        Escalations come from the requests themselves, so an approver's deny shows with
        its reason (the audit log records that deny under the approver, not the agent);
        read issues and the broker's refusals come from the audit log.
        """
        entries: list[Mapping[str, Any]] = []
        for request in self.store.list_requests(agent_subject=agent_subject, limit=limit + 1):
            if request.id == exclude:
                continue
            entries.append(
                {
                    "at": request.created_at,
                    "action": "escalation",
                    "outcome": request.status,
                    "service": request.service,
                    "environment": request.environment,
                    "tier": request.tier,
                    "reason": request.reason or "",
                    "request_id": request.id,
                }
            )
        for r in self.store.recent_audit(
            actor=agent_subject, limit=limit, actions=("request", "issue")
        ):
            if r.action == "request" and r.outcome == "pending":
                continue  # an escalation: listed above with its current outcome
            entries.append(
                {
                    "at": r.at,
                    "action": r.action,
                    "outcome": r.outcome,
                    "service": r.service,
                    "environment": r.environment,
                    "tier": r.tier,
                    "reason": r.reason,
                    "request_id": r.request_id,
                }
            )
        entries.sort(key=lambda e: e["at"], reverse=True)
        return entries[:limit]


def pending_record(
    identity: AgentIdentity,
    resolved: ResolvedRequest,
    now: float,
    break_glass: bool = False,
    approvals_required: int | None = None,
    delay_seconds: int | None = None,
) -> RequestRecord:
    """A new pending escalation for exactly what was resolved, under the tier's rule."""
    request = resolved.request
    rule = resolved.tier.approval
    assert rule is not None, "escalated tiers always have an approval rule"
    return RequestRecord(
        id=new_request_id(now),
        agent_key=identity.key,
        agent_subject=identity.subject,
        agent_issuer=identity.issuer,
        agent_claims=dict(identity.claims),
        service=request.service,
        environment=request.environment,
        region=request.region,
        tier=request.tier,
        backend=request.backend,
        resources=request.resources,
        duration_seconds=resolved.duration_seconds,
        justification=request.justification,
        status="pending",
        created_at=now,
        expires_at=now + rule.pending_expiry_seconds,
        approvals_required=rule.required if approvals_required is None else approvals_required,
        delay_seconds=rule.delay_seconds if delay_seconds is None else delay_seconds,
        break_glass=break_glass,
    )


def _is_requester(approver: Approver, record: RequestRecord) -> bool:
    """True when the approver's identities include the requesting agent's."""
    agent_ids = {record.agent_subject, record.agent_claims.get("sub", "")} - {""}
    approver_ids = {
        approver.name,
        f"agent:{approver.name}",
        approver.oidc_subject or "",
        approver.email or "",
    } - {""}
    return bool(agent_ids & approver_ids)
