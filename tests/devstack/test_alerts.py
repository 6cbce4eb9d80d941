"""Alerts reach the `broker dev` terminal: the log lines that are alerts, and only those,
become terminal lines; a follower sees only what was written since, whole lines only."""

from __future__ import annotations

import json
from pathlib import Path

from broker.devstack.alerts import LogFollower, alert_lines


def log_line(logger: str, message: str, **extra: object) -> str:
    return json.dumps(
        {"time": "2026-12-04T17:00:00.000Z", "logger": logger, "message": message, **extra}
    )


def test_an_alert_line_is_shown_with_its_evidence() -> None:
    line = log_line(
        "broker.notify.base",
        "ALERT: Agent agent:x was frozen by the circuit breaker: 5 denial events.",
        evidence=["request denied: region ap-south-1", "request denied: region ap-south-1"],
    )
    shown = alert_lines(line)
    assert shown[0] == (
        "ALERT 2026-12-04T17:00:00.000Z: Agent agent:x was frozen by the circuit breaker: "
        "5 denial events."
    )
    assert shown[1] == "    request denied: region ap-south-1"
    assert "broker freezes" in shown[-1]


def test_other_lines_are_not_alerts() -> None:
    assert alert_lines(log_line("broker.access", "POST /v1/credentials 200")) == []
    assert alert_lines(log_line("broker.notify.base", "approval requested")) == []
    assert alert_lines("[2026-12-04 17:00:00 +0000] [12] [INFO] Booting worker") == []
    assert alert_lines("") == []


def test_the_follower_reads_only_new_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    log.write_text(log_line("broker.notify.base", "ALERT: before we followed") + "\n")
    follower = LogFollower(log)
    assert follower.alerts() == []
    alert = log_line("broker.notify.base", "ALERT: now")
    with log.open("a") as handle:
        handle.write(alert[:20])
        handle.flush()
        assert follower.alerts() == []  # half a line: wait for the rest
        handle.write(alert[20:] + "\n")
    assert follower.alerts()[0].endswith(": now")
    assert follower.alerts() == []
