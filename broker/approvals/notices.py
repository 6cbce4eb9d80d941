"""What approvers are told about a request, and when: opened, then each change of state.

Notifications are best effort. A notifier that fails (Slack down) or crashes (a bug) is
recorded in the audit trail and logged, never raised: a stored request, or credentials
already issued, must not turn into an error because a message was not delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.approvals.difference import permission_difference
from broker.approvals.intent_view import intent_view
from broker.audit.recorder import AuditRecorder
from broker.config import Settings
from broker.notify.base import ApprovalNotice, NotificationFailed, Notifier, failure_reason
from broker.policy.iam_actions import IamDatabase
from broker.scopes.holder import ScopeHolder
from broker.scopes.model import Approval, Scope
from broker.store.base import ApprovalStore, RequestStore
from broker.store.records import RequestRecord

log = logging.getLogger(__name__)


def _names(people: Sequence[str]) -> str:
    return people[0] if len(people) == 1 else ", ".join(people[:-1]) + " and " + people[-1]


def status_detail(record: RequestRecord, approvals: int, approvers: Sequence[str] = ()) -> str:
    """One line on the request's state, for the message approvers already have: who
    decided it, once it is decided."""
    by = f" by {_names(approvers)}" if approvers else ""
    return {
        "pending": f"{approvals} of {record.approvals_required} approvals so far"
        + (f" ({_names(approvers)})" if approvers else ""),
        "approved": f"approved{by}"
        + (f"; collectable after a {record.delay_seconds}s delay" if record.delay_seconds else ""),
        "denied": record.reason or "denied",
        "expired": "expired before anyone decided",
        "collected": (f"approved{by}; " if by else "") + "credentials collected by the agent",
        "cancelled": record.reason or "cancelled",
    }.get(record.status, record.status)


class NoticeStore(RequestStore, ApprovalStore, Protocol):
    """Where a request's message handle is kept, and who has approved it."""


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class Notices:
    settings: Settings
    scopes: ScopeHolder
    iam: IamDatabase
    store: NoticeStore
    audit: AuditRecorder
    notifier: Notifier

    def notice(
        self, record: RequestRecord, scope: Scope, rule: Approval, approvals_received: int
    ) -> ApprovalNotice:
        approvers = self.settings.approvers_for(rule.named_approvers, rule.named_groups)
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
            adds=permission_difference(record, scope, self.iam),
            duration_seconds=record.duration_seconds,
            approvals_required=record.approvals_required,
            approvals_received=approvals_received,
            delay_seconds=record.delay_seconds,
            page_url=f"{self.settings.public_url}/requests/{record.id}",
            channel=rule.channel or self.settings.slack.default_channel,
            slack_approval=rule.allow_slack_approval,
            direct_slack_users=direct,
            intent=intent_view(
                record,
                env.vault if (env := scope.environments.get(record.environment)) else None,
                self.audit.clock(),
                self.settings.impact_report_seconds,
            ),
            grant_sha256=record.grant_sha256,
        )

    def opened(self, record: RequestRecord, scope: Scope, rule: Approval) -> None:
        """Tell the approvers about a new request; keep the message's handle for updates."""
        notice = self.notice(record, scope, rule, approvals_received=0)
        try:
            handle = self.notifier.request_opened(notice)
        except Exception as e:  # noqa: BLE001 - notifications are best effort
            self._failed(e, record, service=record.service, tier=record.tier)
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

    def updated(self, record: RequestRecord, approvals: int) -> None:
        """Update the approvers' message with the request's state (approvals so far...)."""
        scope = self.scopes.current.get(record.service)
        tier = scope.tiers.get(record.tier) if scope else None  # type: ignore[call-overload]
        if scope is None or tier is None or tier.approval is None:
            return
        notice = self.notice(record, scope, tier.approval, approvals)
        approvers = [
            a.approver for a in self.store.approvals_for(record.id) if a.decision == "approve"
        ]
        detail = status_detail(record, approvals, approvers)
        try:
            self.notifier.request_updated(notice, record.status, detail, record.notification)
        except Exception as e:  # noqa: BLE001 - notifications are best effort
            self._failed(e, record)

    def _failed(self, error: Exception, record: RequestRecord, **context: Any) -> None:
        """Record a notifier's failure; a crash (not a delivery failure) is logged too."""
        reason = failure_reason(error)
        if not isinstance(error, NotificationFailed):
            log.error("notifier crashed: %s", reason, extra={"request_id": record.id})
        self.audit.record(
            "notify", "failed", "broker", reason=reason, request_id=record.id, **context
        )
