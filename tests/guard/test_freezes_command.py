"""`broker freezes`: what is frozen now and why, with the command that lifts each freeze;
and `broker unfreeze --help` describes lifting, not revoking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.broker import make_broker
from tests.fixtures.cli import run_cli

ALWAYS = """\
freezes:
  - name: no deletes ever
    recurring: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00"}
    timezone: UTC
    tiers: [delete]
  - name: last year's close
    start: 2020-12-20T00:00:00
    end: 2021-01-04T00:00:00
    timezone: UTC
    tiers: [write, delete]
"""


def test_freezes_lists_kill_switch_breaker_and_scope_freezes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = make_broker(tmp_path, admins=("agent:ops",))
    ledger = broker.services.settings.scopes_dir / "ledger-secrets.yaml"
    ledger.write_text(ledger.read_text().replace("\nfreezes: []\n", "\n") + ALWAYS)
    revoked = broker.post(
        "/v1/revoke",
        {"agent": "agent:payments-copilot", "reason": "deleting production by mistake"},
        agent="ops",
    )
    assert revoked.status_code == 200, revoked.json
    broker.services.guard.trip("agent:reports-bot", "denial", 5, broker.clock())
    settings = broker.services.settings
    config = tmp_path / "cli.yaml"
    config.write_text(f"scopes_dir: {settings.scopes_dir}\nstate_dir: {settings.state_dir}\n")
    broker.services.close()

    code, out, err = run_cli(capsys, "freezes", "--config", str(config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Frozen (nothing new is issued to these until `broker unfreeze`):"
    assert "  agent agent:payments-copilot" in lines
    assert "      why:   deleting production by mistake" in lines
    assert '      lift:  broker unfreeze --agent agent:payments-copilot --reason "..."' in lines
    assert "  agent agent:reports-bot" in lines
    assert "      why:   circuit breaker: 5 denial events in " in out
    assert "by circuit-breaker" in out
    assert (
        "  ledger: 'no deletes ever' (every Mon, Tue, Wed, Thu, Fri, Sat, Sun 00:00-24:00 UTC) "
        "stops delete requests" in lines
    )
    assert "(1 other change-freeze window(s) in the scopes" in out

    code, out, _ = run_cli(capsys, "freezes", "--config", str(config), "--json")
    listing = json.loads(out)
    assert [f["target"] for f in listing["freezes"]] == [
        "agent:payments-copilot",
        "agent:reports-bot",
    ]
    assert listing["change_freezes"][0]["tiers"] == ["delete"]

    # Lifted with the printed command:
    code, _, err = run_cli(
        capsys,
        "unfreeze",
        "--agent",
        "agent:payments-copilot",
        "--reason",
        "fixed",
        "--config",
        str(config),
    )
    assert code == 0, err
    code, out, _ = run_cli(capsys, "freezes", "--config", str(config))
    # It stays listed with the time the lift takes effect (once the AWS revocation cut-off
    # has passed: a session issued before it would be denied), and without a lift command.
    assert "  agent agent:payments-copilot" in out and "      lifted: from " in out
    assert '--agent agent:payments-copilot --reason "..."' not in out
    assert "agent:reports-bot" in out


def test_nothing_frozen_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker = make_broker(tmp_path)
    settings = broker.services.settings
    broker.services.close()
    config = tmp_path / "cli.yaml"
    config.write_text(f"scopes_dir: {settings.scopes_dir}\nstate_dir: {settings.state_dir}\n")
    code, out, _ = run_cli(capsys, "freezes", "--config", str(config))
    assert code == 0
    assert out.splitlines()[:2] == [
        "Nothing is frozen by the kill switch or the circuit breaker.",
        "No change-freeze window of the scopes is in force now.",
    ]


def test_unfreeze_help_describes_lifting(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "unfreeze", "--help")
    assert code == 0
    assert "Lift a freeze" in out and "Lift the freeze on this agent" in out
    assert "--request" not in out  # a request is never frozen
    assert "Everything the broker issued" not in out and "Cut off" not in out
    code, out, _ = run_cli(capsys, "revoke", "--help")
    assert "Cut off this agent" in out and "--request" in out
