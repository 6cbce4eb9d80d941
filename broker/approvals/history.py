"""The requesting agent's recent history, as the approval page shows it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from broker.store.base import AuditStore, RequestStore


class HistoryStore(RequestStore, AuditStore, Protocol):
    """Escalations from the requests, reads and refusals from the audit log."""


def recent_history(
    store: HistoryStore, agent_subject: str, limit: int = 8, exclude: str | None = None
) -> list[Mapping[str, Any]]:
    """The agent's last requests and what became of them, newest first.

    Escalations come from the requests themselves, so an approver's deny shows with its
    reason (the audit log records that deny under the approver, not the agent); read
    issues and the broker's refusals come from the audit log.
    """
    entries: list[Mapping[str, Any]] = []
    for request in store.list_requests(agent_subject=agent_subject, limit=limit + 1):
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
    for r in store.recent_audit(actor=agent_subject, limit=limit, actions=("request", "issue")):
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
