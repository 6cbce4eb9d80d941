"""Alerts reach the `broker dev` terminal: every process without Slack appends its alerts
to the configured alert log (the server and `broker revoke` alike); the dev stack shows
each, with its evidence; a follower sees only what was written since, whole lines only."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from broker.devstack.alerts import LogFollower, alert_lines
from broker.notify.base import LogNotifier, NotificationFailed


def alert_line(text: str, **extra: object) -> str:
    return json.dumps({"time": "2026-12-04T17:00:00Z", "alert": text, **extra})


def test_an_alert_line_is_shown_with_its_evidence() -> None:
    line = alert_line(
        "Agent agent:x was frozen by the circuit breaker: 5 denial events.",
        evidence=["request denied: region ap-south-1", "request denied: region ap-south-1"],
    )
    shown = alert_lines(line)
    assert shown[0] == (
        "ALERT 2026-12-04T17:00:00Z: Agent agent:x was frozen by the circuit breaker: "
        "5 denial events."
    )
    assert shown[1] == "    request denied: region ap-south-1"
    assert "broker freezes" in shown[-1]


def test_other_lines_are_not_alerts() -> None:
    assert alert_lines(json.dumps({"logger": "broker.access", "message": "POST 200"})) == []
    assert alert_lines(json.dumps({"alert": ["not", "text"]})) == []
    assert alert_lines("[2026-12-04 17:00:00 +0000] [12] [INFO] Booting worker") == []
    assert alert_lines("") == []


def test_the_follower_reads_only_new_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "alerts.log"
    log.write_text(alert_line("before we followed") + "\n")
    follower = LogFollower(log)
    assert follower.alerts() == []
    alert = alert_line("now")
    with log.open("a") as handle:
        handle.write(alert[:20])
        handle.flush()
        assert follower.alerts() == []  # half a line: wait for the rest
        handle.write(alert[20:] + "\n")
    assert follower.alerts()[0].endswith(": now")
    assert follower.alerts() == []


def test_notifiers_of_several_processes_append_whole_private_lines(tmp_path: Path) -> None:
    log = tmp_path / "alerts.log"
    follower = LogFollower(log)
    LogNotifier(log).alert("Kill switch: agent agent:x revoked by cli:ops: leak", ["vault: 3"])
    LogNotifier(log).alert("Agent agent:y was frozen by the circuit breaker")
    shown = follower.alerts()
    assert len([line for line in shown if line.startswith("ALERT ")]) == 2
    assert shown[0].endswith("Kill switch: agent agent:x revoked by cli:ops: leak")
    assert shown[1] == "    vault: 3"
    assert shown[3].endswith("Agent agent:y was frozen by the circuit breaker")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_an_alert_log_that_cannot_be_written_fails_the_notification(tmp_path: Path) -> None:
    with pytest.raises(NotificationFailed, match="alert log"):
        LogNotifier(tmp_path / "missing" / "alerts.log").alert("Kill switch: everything")


def test_every_alert_is_logged_with_or_without_an_alert_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="broker.notify.base"):
        LogNotifier().alert("Kill switch: everything")
        LogNotifier(tmp_path / "alerts.log").alert("Kill switch: agent agent:x")
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == ["ALERT: Kill switch: everything", "ALERT: Kill switch: agent agent:x"]
