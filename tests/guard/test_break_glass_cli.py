"""`broker break-glass` on the command line, as the real OS user of this test run.

The second approval from the same OS account is refused even with $USER changed; the
whole two-person procedure is covered by test_break_glass.py through the logic layer,
where the OS user is a parameter.
"""

from __future__ import annotations

import getpass
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.broker import Broker
from tests.fixtures.cli import run_cli
from tests.guard.helpers import AGENT, guard_broker

ALWAYS_FROZEN = """\
- name: deletes never
  recurring: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
  timezone: UTC
  tiers: [delete]
"""
REASON = "Checkout is down: a corrupt export blocks every order; restore it now."


@pytest.fixture()
def setup(tmp_path: Path) -> Any:
    """A broker on the real clock and a config file naming the same scopes and store."""
    made, _ = guard_broker(tmp_path, ALWAYS_FROZEN, at=time.time())
    yield made, made.write_config(tmp_path / "broker.yaml")
    made.services.close()


def request_args(config: Path, reason: str = REASON, approver: str = "carol") -> list[str]:
    return [
        "break-glass",
        "request",
        "--config",
        str(config),
        "--agent",
        f"agent:{AGENT}",
        "--service",
        "shop",
        "--environment",
        "prod",
        "--region",
        "us-east-1",
        "--tier",
        "delete",
        "--backend",
        "aws",
        "--resource",
        "arn:aws:s3:::shop-prod-data/exports/broken.csv",
        "--reason",
        reason,
        "--approver",
        approver,
    ]


def test_request_prints_the_id_alerts_and_records_the_os_user(
    setup: tuple[Broker, Path],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    made, config = setup
    caplog.set_level(logging.WARNING)
    code, out, err = run_cli(capsys, *request_args(config))
    assert code == 0, err
    request_id = out.strip()
    record = made.services.store.get_request(request_id)
    assert record is not None and record.break_glass and record.status == "pending"
    assert record.agent_subject == f"agent:{AGENT}" and record.duration_seconds == 900
    assert "1 of 2 approvals" in err and f"broker break-glass approve {request_id}" in err
    [flagged] = [
        r
        for r in made.services.store.audit_records(request_id=request_id)
        if r.action == "break_glass"
    ]
    assert flagged.outcome == "requested" and flagged.details["review_required"] is True
    assert flagged.details["os_user"] == getpass.getuser()
    assert flagged.details["host"] == socket.gethostname()
    alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT: ")]
    assert len(alerts) == 1 and "BREAK-GLASS opened by carol" in alerts[0]


def test_the_same_os_user_cannot_approve_twice_even_with_another_user_name(
    setup: tuple[Broker, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made, config = setup
    code, out, err = run_cli(capsys, *request_args(config))
    assert code == 0, err
    request_id = out.strip()
    approve = ["break-glass", "approve", request_id, "--config", str(config)]
    approve += ["--approver", "dave", "--reason", REASON]
    code, out, err = run_cli(capsys, *approve)
    assert (code, out) == (1, "")
    assert err.startswith("error: operating-system user ") and "already approved" in err
    assert "Traceback" not in err
    monkeypatch.setenv("USER", "someone-else")  # getpass.getuser() reads these first
    monkeypatch.setenv("LOGNAME", "someone-else")
    code, out, err = run_cli(capsys, *approve)
    assert code == 1 and "already approved" in err
    assert [a.approver for a in made.services.store.approvals_for(request_id)] == ["carol"]
    assert made.services.approvals.get(request_id).status == "pending"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", "fix it"], "a reason is mandatory"),
        (["--approver", "alice"], "alice is not an approver for tier delete of shop"),
        (["--approver", "zed"], "'zed' is not a configured approver"),
    ],
)
def test_refusals_are_one_line_errors(
    setup: tuple[Broker, Path],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    made, config = setup
    base = request_args(config)
    for option, value in zip(args[::2], args[1::2], strict=True):
        base[base.index(option) + 1] = value
    code, out, err = run_cli(capsys, *base)
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert made.services.store.list_requests() == []


def test_a_reason_is_required(
    setup: tuple[Broker, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = setup
    args = request_args(config)
    index = args.index("--reason")
    code, _, err = run_cli(capsys, *args[:index], *args[index + 2 :])
    assert code == 2 and "Missing option '--reason'" in err


def test_it_goes_on_when_slack_is_down(
    setup: tuple[Broker, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made, config = setup
    with socket.socket() as probe:  # a port nobody listens on: Slack is unreachable
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook = f"http://127.0.0.1:{port}/services/T000/B000/webhooksecret123"
    monkeypatch.setenv("BROKER_SLACK_WEBHOOK_URL", webhook)
    code, out, err = run_cli(capsys, *request_args(config))
    assert code == 0, err
    request_id = out.strip()
    assert "warning: the alert could not be sent (slack webhook alert failed: " in err
    assert "Break-glass goes on." in err
    assert "webhooksecret123" not in err + out
    assert made.services.approvals.get(request_id).break_glass
    failed = [
        r
        for r in made.services.store.audit_records(request_id=request_id)
        if (r.action, r.outcome) == ("notify", "failed")
    ]
    assert len(failed) == 1 and "webhooksecret123" not in repr(failed[0])
