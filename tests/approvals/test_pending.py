"""The stored escalation reads back as exactly what was asked, under the tier's rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.approvals.pending import pending_record, requested
from broker.identity.model import AgentIdentity
from broker.intake import parse_request, resolve
from broker.policy.iam_actions import iam_database
from broker.scopes.registry import load_scope_set
from tests.scopes.factory import lint_context

ROOT = Path(__file__).resolve().parents[2]
AGENT = AgentIdentity(issuer="local", subject="agent:payments-copilot", claims={"team": "pay"})
BODY = {
    "service": "payments",
    "environment": "prod",
    "region": "us-east-1",
    "tier": "delete",
    "backend": "aws",
    "resources": ["arn:aws:s3:::payments-prod-invoices/2026/11/*"],
    "duration": 300,
    "justification": "drop the duplicated November batch",
}


@pytest.mark.parametrize("break_glass", [False, True])
def test_a_pending_record_reads_back_as_the_request_it_was_opened_for(break_glass: bool) -> None:
    scopes = load_scope_set(ROOT / "scopes", lint_context()).scope_set
    asked = parse_request(BODY)
    resolved = resolve(asked, scopes, AGENT, iam_database())
    rule = resolved.tier.approval
    assert rule is not None
    extra = {"approvals_required": 3, "delay_seconds": 0} if break_glass else {}
    record = pending_record(AGENT, resolved, 1000.0, break_glass=break_glass, **extra)
    # The duration is the one resolved (clamped to the backend's floor), not the one asked.
    assert requested(record) == asked.__class__(**{**asked.__dict__, "duration": 900})
    again = resolve(requested(record), scopes, AGENT, iam_database())
    assert again.duration_seconds == resolved.duration_seconds == 900
    assert again.session_policy == resolved.session_policy is not None
    assert record.status == "pending" and record.break_glass is break_glass
    assert record.agent_key == AGENT.key and record.agent_claims == {"team": "pay"}
    assert record.expires_at == 1000.0 + rule.pending_expiry_seconds
    assert record.approvals_required == (3 if break_glass else rule.required)
    assert record.delay_seconds == (0 if break_glass else rule.delay_seconds)
