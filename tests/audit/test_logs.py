"""Structured logs: one JSON line per request with its request id; no token, no secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.logs import JsonFormatter, configure_logging
from tests.fixtures.broker import READ_PAYMENTS, Broker, make_broker


class Lines(logging.Handler):
    """Every log record as the JSON line production writes."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def parsed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture()
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    made = make_broker(tmp_path)
    yield made
    made.services.close()


def access(lines: Lines) -> list[dict[str, Any]]:
    return [line for line in lines.parsed() if line["logger"] == "broker.access"]


def test_one_access_line_per_request_with_its_request_id(broker: Broker, lines: Lines) -> None:
    token = broker.token()
    given = broker.client.post(
        "/v1/credentials",
        json=READ_PAYMENTS,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-0123456789"},
    )
    generated = broker.client.post(
        "/v1/credentials",
        json=READ_PAYMENTS,
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "no spaces allowed"},
    )
    [first, second] = access(lines)
    assert first["request_id"] == given.headers["X-Request-ID"] == "trace-0123456789"
    assert second["request_id"] == generated.headers["X-Request-ID"] != "no spaces allowed"
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "broker.access",
        "message": "POST /v1/credentials 200",
        "request_id": "trace-0123456789",
        "method": "POST",
        "path": "/v1/credentials",
        "status": 200,
        "duration_ms": first["duration_ms"],
        "agent": "agent:payments-copilot",
    }
    assert all(token not in line for line in lines.lines)


def test_the_access_log_names_the_url_rule_not_the_path(broker: Broker, lines: Lines) -> None:
    request_id = "req_" + "a" * 26
    broker.client.get(f"/v1/requests/{request_id}", headers=broker.headers())
    [line] = access(lines)
    assert line["path"] == "/v1/requests/<request_id>" and line["status"] == 404
    assert all(request_id not in text for text in lines.lines)


def test_lines_and_audit_records_of_a_request_share_its_id(broker: Broker, lines: Lines) -> None:
    broker.issuers["aws"].down = True
    response = broker.client.post(
        "/v1/credentials",
        json=READ_PAYMENTS,
        headers={**broker.headers(), "X-Request-ID": "trace-upstream-down"},
    )
    assert response.status_code == 503
    in_request = [
        line for line in lines.parsed() if line.get("request_id") == "trace-upstream-down"
    ]
    assert {line["logger"] for line in in_request} == {"broker.api", "broker.access"}
    [record] = broker.services.store.audit_records()
    assert record.action == "issue" and record.outcome == "failed"
    assert record.details["http_request_id"] == "trace-upstream-down"


def test_secret_named_fields_are_redacted(lines: Lines) -> None:
    logging.getLogger("broker.test").info(
        "calling vault",
        extra={"vault_token": "hvs.abc", "upstream": {"password": "pw", "user": "u"}},
    )
    [line] = lines.parsed()
    assert line["vault_token"] == "[redacted]"
    assert line["upstream"] == {"password": "[redacted]", "user": "u"}


def test_exceptions_stay_on_one_line(lines: Lines) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("broker.test").exception("failed")
    [text] = lines.lines
    assert "\n" not in text and "RuntimeError: boom" in json.loads(text)["exception"]


def test_configure_logging_writes_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("botocore").level)
    try:
        configure_logging("INFO")
        logging.getLogger("broker.test").info("hello", extra={"request_id": "r-1"})
        logging.getLogger("botocore").info("a request body, perhaps with a secret")
        err = capsys.readouterr().err.splitlines()
        assert [json.loads(line)["message"] for line in err] == ["hello"]
        assert json.loads(err[0])["request_id"] == "r-1"
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        logging.getLogger("botocore").setLevel(saved[2])
