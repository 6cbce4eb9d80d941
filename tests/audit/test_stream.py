"""The live stream (settings.audit_stream): every record as a JSON line, as it happens."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from broker.audit.chain import GENESIS
from broker.audit.recorder import AuditRecorder, AuditStream, record_json
from broker.store.sql import SqlStore
from tests.fixtures.broker import READ_PAYMENTS, make_broker
from tests.fixtures.secret_scan import Watcher


def test_a_stream_file_receives_exactly_the_stored_records(
    tmp_path: Path, secret_scan: Watcher
) -> None:
    stream = tmp_path / "siem" / "audit.jsonl"
    secret_scan.watch(stream)
    broker = make_broker(tmp_path, audit_stream=str(stream))
    broker.post("/v1/credentials", READ_PAYMENTS)  # issued
    broker.post("/v1/credentials", READ_PAYMENTS)  # from the cache
    broker.client.post("/v1/credentials", json=READ_PAYMENTS)  # no token
    lines = [json.loads(line) for line in stream.read_text().splitlines()]
    stored = [record_json(r) for r in broker.services.store.audit_records()]
    assert lines == stored
    assert [(x["action"], x["outcome"]) for x in lines] == [
        ("issue", "issued"),
        ("issue", "cached"),
        ("authenticate", "denied"),
    ]
    assert lines[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(lines, lines[1:], strict=False))
    assert stream.stat().st_mode & 0o077 == 0  # readable by the broker's user only
    broker.services.close()


def test_stream_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker = make_broker(tmp_path, audit_stream="-")
    capsys.readouterr()
    broker.post("/v1/credentials", READ_PAYMENTS)
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["action"] for line in out] == ["issue"]
    broker.services.close()


def test_a_failing_stream_loses_nothing_from_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/dev/full refuses every write: the request still succeeds, the store has the record."""
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    stream = AuditStream("/dev/full")
    store.subscribe_audit(stream)
    broker = make_broker(tmp_path, store=store)
    with caplog.at_level(logging.WARNING, logger="broker.audit.recorder"):
        response = broker.post("/v1/credentials", READ_PAYMENTS)
    assert response.status_code == 200
    assert stream.failures == 1
    [record] = store.audit_records()
    assert record.action == "issue"
    [warning] = [r for r in caplog.records if r.name == "broker.audit.recorder"]
    assert warning.getMessage() == "audit stream write failed; the record is in the store"
    assert warning.__dict__["seq"] == 1
    stream.close()
    broker.services.close()


def test_a_closed_stream_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    stream = AuditStream(str(path))
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    store.subscribe_audit(stream)
    recorder = AuditRecorder(store, correlation=lambda: None)
    recorder.record("scope_reload", "applied", "broker")
    stream.close()
    recorder.record("scope_reload", "applied", "broker")
    assert len(path.read_text().splitlines()) == 1 and stream.failures == 1
    store.close()
