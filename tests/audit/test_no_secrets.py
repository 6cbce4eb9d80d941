"""Refusal and failure paths keep secrets out of audit records and log lines.

Personal approval links carry their token in the URL path, so anything that records "the
path" must record the URL rule instead. The suite-wide scan (tests/fixtures/secret_scan.py)
watches every test; these tests drive the paths where a leak would hide and check directly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from broker.audit.recorder import AuditRecorder, record_line
from broker.errors import StoreUnavailable
from broker.store.sql import SqlStore
from tests.audit.helpers import scopes_without_freezes
from tests.fixtures.broker import READ_PAYMENTS, Broker, make_broker

WRITE_PAYMENTS = {
    **READ_PAYMENTS,
    "tier": "write",
    "resources": ["arn:aws:s3:::payments-prod-invoices/2024/a.pdf"],
    "justification": "fix an invoice",
}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {json.dumps(vars(record), default=str)}")


@pytest.fixture()
def pending(tmp_path: Path) -> Iterator[tuple[Broker, str, Lines]]:
    """A broker with a pending write request, and a personal link for alice."""
    scopes_without_freezes(tmp_path)
    broker = make_broker(tmp_path)
    request_id = broker.post("/v1/credentials", WRITE_PAYMENTS).json["request_id"]
    link = broker.services.links.mint(request_id, "alice", now=broker.clock())
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield broker, link, handler
    root.removeHandler(handler)
    root.setLevel(level)
    broker.services.close()


def everything(broker: Broker, lines: Lines) -> str:
    records = [record_line(r) for r in broker.services.store.audit_records()]
    return "\n".join(records + lines.lines)


def test_an_agent_token_on_the_approval_page_is_audited_without_the_link(
    pending: tuple[Broker, str, Lines],
) -> None:
    broker, link, lines = pending
    token = broker.token()
    response = broker.client.get(f"/approve/{link}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    [refusal] = broker.services.store.recent_audit(limit=1)
    assert (refusal.action, refusal.outcome) == ("approve", "refused")
    assert refusal.details["path"] == "/approve/<token>"
    assert link not in everything(broker, lines) and token not in everything(broker, lines)


def test_a_store_failure_on_the_approval_page_logs_no_link(
    pending: tuple[Broker, str, Lines],
) -> None:
    broker, link, lines = pending
    with broker.services.store.engine.begin() as connection:
        connection.execute(text("ALTER TABLE requests RENAME TO requests_gone"))
    response = broker.client.get(f"/approve/{link}")
    assert response.status_code == 503
    assert any("GET /approve/<token> 503" in line for line in lines.lines)
    assert link not in "\n".join(lines.lines)


def test_errors_on_a_path_with_a_token_log_the_rule_not_the_path(tmp_path: Path) -> None:
    """The app-wide error handlers (5xx warnings, unexpected errors) never log the raw path."""
    broker = make_broker(tmp_path)

    def unavailable(token: str) -> str:
        raise StoreUnavailable("the broker's store is unavailable (OperationalError)")

    def crash(token: str) -> str:
        raise RuntimeError("a bug")

    broker.app.add_url_rule("/t/unavailable/<token>", view_func=unavailable)
    broker.app.add_url_rule("/t/crash/<token>", view_func=crash)
    handler = Lines()
    logging.getLogger("broker.api").addHandler(handler)
    try:
        token = "link-token-do-not-log-8311"
        assert broker.client.get(f"/t/unavailable/{token}").status_code == 503
        assert broker.client.get(f"/t/crash/{token}").status_code == 500
    finally:
        logging.getLogger("broker.api").removeHandler(handler)
        broker.services.close()
    assert len(handler.lines) == 2
    assert '"path": "/t/unavailable/<token>"' in handler.lines[0]
    assert '"path": "/t/crash/<token>"' in handler.lines[1]
    assert token not in "\n".join(handler.lines)


def test_secret_fields_are_refused_at_any_depth_and_nothing_is_appended(tmp_path: Path) -> None:
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    recorder = AuditRecorder(store, correlation=lambda: None)
    for details in (
        {"session_token": "x"},
        {"upstream": {"vault_token": "x"}},
        {"attempts": [{"ok": True}, {"password": "x"}]},
        {"Client-Secret": "x"},
    ):
        with pytest.raises(ValueError, match="refusing to audit secret fields") as caught:
            recorder.record("issue", "issued", "agent:x", **details)
        assert "'x'" not in str(caught.value)  # the names, never the values
    assert store.audit_head_entry() is None
    recorder.record("issue", "issued", "agent:x", accessor="acc-1", access_key_id="ASIA1")
    store.close()
