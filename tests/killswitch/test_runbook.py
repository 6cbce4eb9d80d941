"""The runbook quotes the 403s an operator will see; they must be the broker's own words."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.broker import READ_PAYMENTS, make_broker

RUNBOOK = (Path(__file__).resolve().parents[2] / "docs" / "runbook-kill-switch.md").read_text()


def quoted(message: str) -> bool:
    return any(line.strip() == message for line in RUNBOOK.splitlines())


def test_the_runbook_quotes_the_kill_switch_403(tmp_path: Path) -> None:
    broker = make_broker(tmp_path, admins=("agent:ops",))
    revoked = broker.post(
        "/v1/revoke",
        {"agent": "agent:payments-copilot", "reason": "deleting production by mistake"},
        agent="ops",
    )
    assert revoked.status_code == 200
    refused = broker.post("/v1/credentials", READ_PAYMENTS)
    assert refused.status_code == 403 and refused.json["error"] == "frozen"
    assert quoted(refused.json["message"]), refused.json["message"]


def test_the_runbook_quotes_the_circuit_breaker_403(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    for _ in range(broker.services.settings.breaker.max_denials):
        denied = broker.post("/v1/credentials", {**READ_PAYMENTS, "region": "ap-south-1"})
        assert denied.status_code in (403, 404)
    refused = broker.post("/v1/credentials", READ_PAYMENTS)
    assert refused.status_code == 403 and refused.json["error"] == "frozen", refused.json
    assert quoted(refused.json["message"]), refused.json["message"]
