"""An escalation as stored: made from a resolved request, and read back as what was asked.

The stored request is the grant approvers see and decide on: exactly the resources,
region and duration resolved when it was opened, under the tier's rule of that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import CredentialRequest, ResolvedRequest
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class Pending:
    """A request opened for approval: the agent polls it, then collects."""

    request: RequestRecord


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


def requested(record: RequestRecord) -> CredentialRequest:
    """The request ``record`` was opened for, to be resolved again against the scopes."""
    return CredentialRequest(
        service=record.service,
        environment=record.environment,
        region=record.region,
        tier=record.tier,  # type: ignore[arg-type]
        backend=record.backend,  # type: ignore[arg-type]
        resources=record.resources,
        duration=record.duration_seconds,
        justification=record.justification,
    )
