"""Alerts in the `broker dev` terminal: without Slack, the broker's alerts (kill switch,
circuit breaker) are appended to the config's ``alerts.log`` file by whichever process
raised them (the server, or `broker revoke` in another shell); the dev stack follows that
file and prints each alert where the newcomer is looking."""

from __future__ import annotations

import json
from pathlib import Path

ALERT_LOG = Path("logs") / "alerts.log"  # under the dev state directory


def alert_lines(line: str) -> list[str]:
    """The terminal lines for one line of the alert log: the alert and its evidence."""
    try:
        entry = json.loads(line)
    except ValueError:
        return []
    if not isinstance(entry, dict) or not isinstance(entry.get("alert"), str):
        return []
    shown = [f"ALERT {entry.get('time', '')}: {entry['alert']}"]
    evidence = entry.get("evidence")
    if isinstance(evidence, list):
        shown.extend(f"    {item}" for item in evidence[:10])
    shown.append("    (`broker freezes` lists what is frozen and how to lift it)")
    return shown


class LogFollower:
    """New complete lines of a growing file, from where it stood when followed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        self.offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [raw.decode("utf-8", "replace") for raw in complete]

    def alerts(self) -> list[str]:
        return [shown for line in self.new_lines() for shown in alert_lines(line)]
