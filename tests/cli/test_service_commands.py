"""`broker config check`, `broker token mint`, `broker store upgrade` and `broker serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from broker.config import load_settings
from broker.devstack.processes import ServerProcess, free_port
from broker.identity.verifier import TokenVerifier
from broker.keys import load_keys
from tests.fixtures.cli import CliResult, run_cli

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, *args)


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "broker.yaml"
    config.write_text(
        f"scopes_dir: {ROOT / 'scopes'}\nstate_dir: {tmp_path / 'state'}\n"
        "approvers:\n  alice: {email: alice@example.com}\n" + extra
    )
    return config


def test_config_check_accepts_a_valid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["config", "check", str(write_config(tmp_path))], capsys)
    assert code == 0 and out.startswith("OK:") and "1 approvers" in out


def test_config_check_reports_every_problem_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(
        "workers: many\nlisten: nowhere\nvault:\n  token: hvs.plaintext\n"
        "colour: blue\ngroups:\n  sre: [nobody]\n"
    )
    code, _, err = run(["config", "check", str(config)], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert f"{config}:1:10: workers must be an integer" in lines
    assert any(line.startswith(f"{config}:2:9: listen") for line in lines)
    assert any(
        "vault.token must not be written in the file; set BROKER_VAULT_TOKEN" in line
        for line in lines
    )
    assert any("unknown key 'colour'" in line for line in lines)
    assert "hvs.plaintext" not in err


def test_token_mint_prints_a_token_the_broker_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    code, out, _ = run(
        ["token", "mint", "--config", str(config), "--agent", "ci-bot", "--ttl", "30m"], capsys
    )
    assert code == 0
    settings = load_settings(config)
    key_file = settings.state_dir / "agent-signing-key.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    identity = TokenVerifier(settings.identity, load_keys(settings.state_dir)).verify(out.strip())
    assert identity.subject == "agent:ci-bot"
    code, _, err = run(
        ["token", "mint", "--config", str(config), "--agent", "x", "--ttl", "forever"], capsys
    )
    assert code == 1 and "--ttl 'forever' is not a duration" in err


def test_store_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["store", "upgrade", "--config", str(write_config(tmp_path))], capsys)
    assert code == 0 and "up to date" in out
    assert (tmp_path / "state" / "broker.db").exists()


def test_serve_runs_under_gunicorn_with_the_configured_workers(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, f"listen: 127.0.0.1:{port}\nworkers: 2\n")
    server = ServerProcess(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(config)],
        tmp_path / "serve.log",
    )
    server.start(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok)
    try:
        assert server.process is not None
        children = subprocess.run(
            ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(children) == 2  # two gunicorn workers under the master
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.json() == {"status": "ok"}
        assert "gunicorn" in requests.get(
            f"http://127.0.0.1:{port}/healthz", timeout=5
        ).headers.get("Server", "")
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode == 0
