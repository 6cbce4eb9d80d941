"""A request's whole story, told by `broker audit show` and exported by `broker audit export`.

The story is produced by the real broker app (requests over HTTP, approvals through the
approval service, the agent collecting), then read back through the command line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.audit.chain import GENESIS, record_hash
from broker.audit.recorder import AuditRecorder
from broker.store.records import AuditRecord
from broker.store.sql import SqlStore
from tests.audit.helpers import scopes_without_freezes, write_config
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.cli import run_cli

DELETE_INVOICE = {
    "service": "payments",
    "environment": "prod",
    "region": "us-east-1",
    "tier": "delete",
    "backend": "aws",
    "resources": ["arn:aws:s3:::payments-prod-invoices/2023/old.pdf"],
    "justification": "remove a duplicate invoice",
}


@pytest.fixture()
def story(tmp_path: Path) -> Iterator[tuple[Broker, str, Path]]:
    """A delete request requested, approved by two, collected after the delay."""
    scopes_without_freezes(tmp_path)
    broker = make_broker(tmp_path)
    opened = broker.post("/v1/credentials", DELETE_INVOICE)
    assert opened.status_code == 202, opened.json
    request_id = opened.json["request_id"]
    approvals = broker.services.approvals
    broker.clock.advance(30)
    approvals.decide(request_id, "carol", "approve", "page")
    broker.clock.advance(90)
    approvals.decide(request_id, "dave", "approve", "page")
    broker.clock.advance(601)
    collected = broker.post(f"/v1/requests/{request_id}/credentials", None)
    assert collected.status_code == 200, collected.json
    yield broker, request_id, write_config(tmp_path)
    broker.services.close()


def test_show_tells_the_whole_story_in_order(
    story: tuple[Broker, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    broker, request_id, config = story
    result = run_cli(capsys, "audit", "show", "--request", request_id, "--config", str(config))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"Request {request_id}: delete payments/prod"
    verbs = [line.split()[2] for line in lines[1:]]
    assert verbs == [
        "requested",
        "notified",
        "approval",
        "approval",
        "approved",
        "collected",
        "issued",
    ]
    text = result.out
    assert "agent:payments-copilot  delete on payments/prod (aws, us-east-1)" in text
    assert "resources arn:aws:s3:::payments-prod-invoices/2023/old.pdf" in text
    assert "2 approval(s) required, 600s delay" in text
    assert "justification: \u201cremove a duplicate invoice\u201d" in text
    assert "approver:carol  via page; 1 of 2" in text
    assert "approver:dave  via page; 2 of 2" in text
    [issued] = [line for line in lines if " issued " in line]
    assert "access_key_id=ASIAFAKE00000000" in issued and "expires " in issued
    assert "resources=[arn:aws:s3:::payments-prod-invoices/2023/old.pdf]" in issued
    credentials = broker.issuers["aws"].calls
    assert len(credentials) == 1
    # Times are the broker's, millisecond precision, in order.
    stamps = [line.split()[0] for line in lines[1:]]
    assert stamps == sorted(stamps)


def test_show_json_prints_the_stored_records(
    story: tuple[Broker, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    broker, request_id, config = story
    result = run_cli(
        capsys, "audit", "show", "--request", request_id, "--json", "--config", str(config)
    )
    assert result.code == 0
    shown = [json.loads(line) for line in result.out.splitlines()]
    stored = list(broker.services.store.audit_records(request_id=request_id))
    assert [r["seq"] for r in shown] == [r.seq for r in stored]
    assert [r["hash"] for r in shown] == [r.hash for r in stored]


def test_show_refuses_a_malformed_id_and_reports_an_unknown_one(
    story: tuple[Broker, str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, config = story
    bad = run_cli(capsys, "audit", "show", "--request", "req_'; drop", "--config", str(config))
    assert bad.code == 1 and bad.err.startswith("error: 'req_'; drop' is not a request id")
    unknown = "req_" + "a" * 26
    missing = run_cli(capsys, "audit", "show", "--request", unknown, "--config", str(config))
    assert missing.code == 1 and missing.err == f"no audit records for request {unknown}\n"


def as_record(line: dict[str, object]) -> AuditRecord:
    fields = {k: v for k, v in line.items() if k != "time"}
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_export_writes_verifiable_json_lines(
    story: tuple[Broker, str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, _, config = story
    output = tmp_path / "siem" / "audit.jsonl"
    output.parent.mkdir()
    result = run_cli(
        capsys, "audit", "export", "--since", "1970-01-01", "--output", str(output),
        "--config", str(config),
    )  # fmt: skip
    assert result.code == 0, result.err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    head = broker.services.store.audit_head_entry()
    assert head is not None and len(lines) == head[0]
    assert result.err == f"exported {len(lines)} record(s) to {output} (up to record {head[0]})\n"
    # A SIEM can check the copy on its own: every line's hash and link.
    previous = GENESIS
    for line in lines:
        record = as_record(line)
        assert record.prev_hash == previous
        assert record_hash(record, line["seq"], previous) == line["hash"]
        previous = line["hash"]
    assert {"time", "at", "actor", "action", "outcome", "details"} <= set(lines[0])


def test_export_since_a_duration_or_a_sequence_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").mkdir()
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'state' / 'broker.db'}")
    now = time.time()
    times = iter([now - 3 * 3600, now - 3600, now - 60])
    recorder = AuditRecorder(store, clock=lambda: next(times))
    for outcome in ("issued", "cached", "cached"):
        recorder.record("issue", outcome, "agent:payments-copilot", service="payments")
    config = str(write_config(tmp_path))
    recent = run_cli(capsys, "audit", "export", "--since", "2h", "--config", config)
    assert [json.loads(x)["seq"] for x in recent.out.splitlines()] == [2, 3]
    assert recent.err == "exported 2 record(s) (up to record 3)\n"
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 2 * 3600))
    assert run_cli(capsys, "audit", "export", "--since", iso, "--config", config).out == recent.out
    resumed = run_cli(capsys, "audit", "export", "--after-seq", "2", "--config", config)
    assert [json.loads(x)["seq"] for x in resumed.out.splitlines()] == [3]
    store.close()


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("yesterday", "'yesterday' is neither an ISO date/time"),
        ("2999-01-01", "'2999-01-01' is in the future"),
    ],
)
def test_a_bad_since_is_refused_and_the_old_export_kept(
    story: tuple[Broker, str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    since: str,
    message: str,
) -> None:
    _, _, config = story
    output = tmp_path / "audit.jsonl"
    output.write_text("previous export\n")
    result = run_cli(
        capsys, "audit", "export", "--since", since, "--output", str(output), "--config",
        str(config),
    )  # fmt: skip
    assert result.code == 2
    assert f"Invalid value for '--since': {message}" in result.err
    assert output.read_text() == "previous export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".audit")] == []


def test_export_into_a_missing_directory_is_refused(
    story: tuple[Broker, str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, config = story
    output = tmp_path / "nowhere" / "audit.jsonl"
    result = run_cli(capsys, "audit", "export", "--output", str(output), "--config", str(config))
    assert result.code == 1
    assert result.err == f"error: no such directory: {output.parent}\n"
