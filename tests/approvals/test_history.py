"""The requesting agent's recent history, as the approval page shows it."""

from __future__ import annotations

from broker.approvals.history import recent_history
from tests.approvals.flows import WRITE_PAYMENTS, open_request
from tests.fixtures.broker import Broker


def test_the_agents_recent_history_includes_denials(broker: Broker) -> None:
    broker.post("/v1/credentials", {**WRITE_PAYMENTS, "tier": "read", "resources": []})
    denied = open_request(broker, WRITE_PAYMENTS)
    broker.services.approvals.decide(denied, "bob", "deny", "link", "batch is wrong")
    current = open_request(broker, {**WRITE_PAYMENTS, "justification": "second try"})
    history = recent_history(broker.services.store, "agent:payments-copilot", exclude=current)
    assert [(h["action"], h["outcome"]) for h in history] == [
        ("escalation", "denied"),
        ("issue", "issued"),
    ]
    assert history[0]["reason"] == "denied by bob: batch is wrong"
