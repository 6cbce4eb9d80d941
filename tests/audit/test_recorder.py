"""The recorder: what it stores is what it hashes; bad input is still audited; one vocabulary."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from broker.audit.actions import BY_NAME, CATALOGUE, verb
from broker.audit.export import parse_since
from broker.audit.recorder import AuditRecorder, correlation_of
from broker.audit.timeline import summary
from broker.audit.verify import verify_store
from broker.store.records import IssuedRecord
from broker.store.sql import SqlStore
from tests.fixtures.broker import READ_PAYMENTS, make_broker

PACKAGE = Path(__file__).resolve().parents[2] / "broker"


def test_odd_detail_values_are_stored_as_hashed(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    recorder = AuditRecorder(store, correlation=lambda: None)
    returned = recorder.record(
        "scope_reload",
        "applied",
        "broker",
        changed=("payments", "ledger"),
        file=tmp_path / "scopes" / "payments.yaml",
        counts={1: "one"},
        ratio=0.1 + 0.2,
    )
    [stored] = store.audit_records()
    assert stored == returned
    assert stored.details == {
        "changed": ["payments", "ledger"],
        "file": str(tmp_path / "scopes" / "payments.yaml"),
        "counts": {"1": "one"},
        "ratio": 0.1 + 0.2,
    }
    assert verify_store(store).ok
    store.close()


def test_a_bad_tier_on_postgresql_is_refused_and_audited_not_a_store_error(
    tmp_path: Path, postgres_url: str
) -> None:
    """PostgreSQL enforces column widths: the recorder clips, and keeps the full value."""
    broker = make_broker(tmp_path, store=SqlStore.from_url(postgres_url))
    long_tier = "read-but-actually-everything"
    response = broker.post("/v1/credentials", {**READ_PAYMENTS, "tier": long_tier})
    assert response.status_code == 400 and response.json["field"] == "tier"
    long_actor = "agent:" + "x" * 600
    broker.services.audit.record("authenticate", "denied", long_actor, reason="test")
    store = broker.services.store
    [refusal, long] = store.audit_records()
    assert refusal.tier == "read-but-\u2026" and len(refusal.tier) == 10
    assert refusal.details["unclipped"] == {"tier": long_tier}
    assert long.actor == long_actor[:511] + "\u2026"
    assert long.details["unclipped"] == {"actor": long_actor}
    assert verify_store(store).ok
    broker.services.close()


def test_records_inside_a_request_carry_its_http_request_id(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    broker.client.post(
        "/v1/credentials",
        json=READ_PAYMENTS,
        headers={**broker.headers(), "X-Request-ID": "trace-audit-0001"},
    )
    outside = broker.services.audit.record("scope_reload", "applied", "broker")
    inside = next(iter(broker.services.store.audit_records()))
    assert inside.details["http_request_id"] == "trace-audit-0001"
    assert "http_request_id" not in outside.details
    broker.services.close()


def test_credential_events_carry_the_correlation_ids(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    issued = IssuedRecord(
        request_id="req_" + "b" * 26,
        agent_key="local:agent:payments-copilot",
        agent_subject="agent:payments-copilot",
        service="payments",
        environment="prod",
        region="us-east-1",
        tier="write",
        backend="aws",
        issued_at=1.0,
        expires_at=2.0,
        access_key_id="ASIAREVOKED000001",
        source_identity="agent-payments-copilot",
        role_arn="arn:aws:iam::123456789012:role/broker/payments-prod-write",
    )
    record = AuditRecorder(store, correlation=lambda: None).credential_event(
        "revoke", "revoked", "operator:jane", issued, reason="incident 42"
    )
    assert record.request_id == issued.request_id and record.tier == "write"
    assert record.details == {
        "backend": "aws",
        "agent": "agent:payments-copilot",
        **correlation_of(issued),
    }
    assert correlation_of(issued) == {
        "access_key_id": "ASIAREVOKED000001",
        "source_identity": "agent-payments-copilot",
        "role_arn": "arn:aws:iam::123456789012:role/broker/payments-prod-write",
    }
    assert summary(record) == (
        "aws; access_key_id=ASIAREVOKED000001, source_identity=agent-payments-copilot, "
        "role_arn=arn:aws:iam::123456789012:role/broker/payments-prod-write; "
        "agent=agent:payments-copilot; reason: incident 42"
    )
    assert verb(record.action, record.outcome) == "revoked"
    store.close()


def recorded_actions() -> list[tuple[str, int, str, str | None]]:
    """Every audit.record("action", "outcome", ...) call in the package with a literal action."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("record", "credential_event")
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            outcome = node.args[1]
            literal = outcome.value if isinstance(outcome, ast.Constant) else None
            assert literal is None or isinstance(literal, str)
            found.append((str(path.relative_to(PACKAGE)), node.lineno, node.args[0].value, literal))
    return found


def test_every_recorded_action_and_outcome_is_in_the_catalogue() -> None:
    """docs/audit.md lists the catalogue; a new action name must be added there too."""
    calls = recorded_actions()
    assert len(calls) > 10
    for where, line, action, outcome in calls:
        assert action in BY_NAME, f"{where}:{line}: action '{action}' is not in actions.py"
        if outcome is not None:
            assert outcome in BY_NAME[action].outcomes, f"{where}:{line}: outcome '{outcome}'"


def test_the_catalogue_is_documented() -> None:
    document = (PACKAGE.parent / "docs" / "audit.md").read_text()
    for action in CATALOGUE:
        assert f"| `{action.name}` |" in document, action.name
        for outcome in action.outcomes:
            assert f"`{outcome}`" in document


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [("24h", 86400), ("7d", 7 * 86400), ("1h30m", 5400), ("2w", 14 * 86400), ("90s", 90)],
)
def test_since_durations(text: str, seconds_ago: int) -> None:
    assert parse_since(text, 1_800_000_000.0) == 1_800_000_000.0 - seconds_ago


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("2024-05-01", 1714521600.0),
        ("2024-05-01T12:00:00Z", 1714564800.0),
        ("2024-05-01T12:00", 1714564800.0),  # no offset: UTC
        ("2024-05-01T14:00:00+02:00", 1714564800.0),
    ],
)
def test_since_times(text: str, at: float) -> None:
    assert parse_since(text, 1_800_000_000.0) == at


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "1y", "last week", "2024-13-01"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="is neither an ISO date/time"):
        parse_since(text, 1_800_000_000.0)
