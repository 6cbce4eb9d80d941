"""An escalation as stored: made from a resolved request, and read back as what was asked.

The stored request is the grant approvers see and decide on: exactly the resources,
region and duration resolved when it was opened, under the tier's rule of that moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import CredentialRequest, ResolvedRequest
from broker.intent.canonical import from_canonical
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class Pending:
    """A request opened for approval: the agent polls it, then collects."""

    request: RequestRecord
    intent: Mapping[str, object] | None = None  # the intent's summary, for the answer


@dataclass(frozen=True)
class RequestView:
    """A request as its agent (or an approver) sees it."""

    record: RequestRecord
    approvals_received: int
    approvers: tuple[str, ...]
    denied_by: str | None


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
    intent = resolved.intent.intent if resolved.intent else None
    return RequestRecord(
        id=new_request_id(now),
        agent_key=identity.key,
        agent_subject=identity.principal,
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
        approvals_required=rule.total_required
        if approvals_required is None
        else approvals_required,
        delay_seconds=rule.delay_seconds if delay_seconds is None else delay_seconds,
        break_glass=break_glass,
        # Only the canonical form: the plan as sent may hold sensitive values in clear.
        intent=intent.canonical_json if intent else None,
        intent_sha256=intent.sha256 if intent else None,
        impact={"status": "measuring"} if resolved.intent and resolved.intent.has_impact else {},
        grant=resolved.grant.canonical_json(),
        grant_sha256=resolved.grant.sha256,
    )


def intent_audit(resolved: ResolvedRequest) -> dict[str, Any]:
    """What the audit keeps of a request's intent: the whole canonical form, and its hash."""
    if resolved.intent is None:
        return {}
    intent = resolved.intent
    return {
        "intent": intent.intent.canonical_json,
        "intent_sha256": intent.intent.sha256,
        "intent_summary": intent.summary.as_dict(),
    }


def requested(record: RequestRecord) -> CredentialRequest:
    """The request ``record`` was opened for, to be resolved again against the scopes.

    Its intent is read back from the stored canonical form, refused (400) unless it still
    hashes to the SHA-256 the approvers saw.
    """
    intent = (
        from_canonical(record.intent, record.intent_sha256 or "")
        if record.intent is not None
        else None
    )
    return CredentialRequest(
        service=record.service,
        environment=record.environment,
        region=record.region,
        tier=record.tier,  # type: ignore[arg-type]
        backend=record.backend,  # type: ignore[arg-type]
        resources=record.resources,
        duration=record.duration_seconds,
        justification=record.justification,
        intent=intent,
    )
