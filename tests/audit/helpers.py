"""Helpers for the audit tests: a config for `broker` commands, a filled chain."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from broker.audit.recorder import AuditRecorder
from broker.store.sql import SqlStore
from tests.fixtures.broker import ROOT


def write_config(directory: Path, store_url: str | None = None) -> Path:
    """A broker config whose store is ``store_url`` or the SQLite file in ``directory``/state."""
    lines = [f"state_dir: {directory / 'state'}"]
    if store_url:
        lines.append(f"store:\n  url: {store_url}")
    path = directory / "broker.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fill(store: SqlStore, count: int, start: float = 1_700_000_000.0) -> AuditRecorder:
    """Append ``count`` records of an approved request's life, one second apart."""
    clock = iter(start + n for n in range(10_000))
    recorder = AuditRecorder(store, clock=lambda: next(clock), correlation=lambda: None)
    for n in range(count):
        recorder.record(
            "issue",
            "issued",
            f"agent:bot-{n}",
            service="payments",
            environment="prod",
            tier="read",
            request_id=f"req_{n:026d}",
            access_key_id=f"ASIA{n:016d}",
        )
    return recorder


def scopes_without_freezes(tmp_path: Path) -> None:
    """The example scopes, minus change-freeze windows (the tests must not depend on dates)."""
    target = tmp_path / "scopes"
    shutil.copytree(ROOT / "scopes", target)
    for path in target.glob("*.yaml"):
        text = path.read_text()
        path.write_text(re.split(r"^freezes:", text, flags=re.MULTILINE)[0])
