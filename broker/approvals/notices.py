"""What approvers are told about a request, and when: opened, then each change of state.

Notifications are best effort. A notifier that fails (Slack down) or crashes (a bug) is
recorded in the audit trail and logged, never raised: a stored request, or credentials
already issued, must not turn into an error because a message was not delivered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from broker.approvals.difference import permission_difference
from broker.approvals.intent_view import intent_view
from broker.audit.recorder import AuditRecorder
from broker.config import Settings
from broker.notify.base import ApprovalNotice, NotificationFailed, Notifier, failure_reason
from broker.policy.iam_actions import IamDatabase
from broker.scopes.holder import ScopeHolder
from broker.scopes.model import Approval, Scope
from broker.store.base import RequestStore
from broker.store.records import RequestRecord

log = logging.getLogger(__name__)


def status_detail(record: RequestRecord, approvals: int) -> str:
    """One line on the request's state, for the message approvers already have."""
    return {
        "pending": f"{approvals} of {record.approvals_required} approvals so far",
        "approved": "approved"
        + (f"; collectable after a {record.delay_seconds}s delay" if record.delay_seconds else ""),
        "denied": record.reason or "denied",
        "expired": "expired before anyone decided",
        "collected": "credentials collected by the agent",
        "cancelled": record.reason or "cancelled",
    }.get(record.status, record.status)


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class Notices:
    settings: Settings
    scopes: ScopeHolder
    iam: IamDatabase
    store: RequestStore
    audit: AuditRecorder
    notifier: Notifier

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
        detail = status_detail(record, approvals)
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
