"""`broker config check`, `broker token mint`, `broker store upgrade` and `broker serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from broker.config import load_settings
from broker.devstack.processes import ServerProcess, free_port
from broker.errors import InvalidFileError
from broker.identity.verifier import TokenVerifier
from broker.keys import load_keys
from tests.fixtures.broker import make_broker
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
    # Without sign-in, say plainly what approving a delete rests on.
    assert "WARNING: no approver sign-in is configured" in out
    assert "possession of the link is the only proof" in out


def test_config_check_with_sign_in_has_no_possession_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_OIDC_CLIENT_SECRET", "s" * 32)
    extra = "approvals:\n  oidc:\n    issuer: https://sso.example.com\n    client_id: broker\n"
    code, out, _ = run(["config", "check", str(write_config(tmp_path, extra))], capsys)
    assert code == 0 and out.startswith("OK:") and "WARNING" not in out


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


# (vault.auth's body, the problem's line:column: start); the file's first 4 lines are
# write_config's own, then "vault:" and "  auth:".
VAULT_AUTH_PROBLEMS = [
    ("method: ldap\n", "7:13: vault.auth.method 'ldap' is invalid: one of token, approle"),
    ("method: kubernetes\n", "7:5: vault.auth: method kubernetes needs 'role'"),
    ("method: approle\n", "7:5: vault.auth: method approle needs 'role_id'"),
    ("method: approle\n    role_id: r1\n    secret_id: s3cr3t-id\n", "9:16: vault.auth.secret_id"),
    ("method: token\n    role: x\n", "8:11: vault.auth.role does not apply to method token"),
    ("method: jwt\n    role: x\n    role_id: y\n", "9:14: vault.auth.role_id does not apply"),
]


@pytest.mark.parametrize(("auth", "expected"), VAULT_AUTH_PROBLEMS)
def test_config_check_reports_vault_auth_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], auth: str, expected: str
) -> None:
    config = write_config(tmp_path, f"vault:\n  auth:\n    {auth}")
    code, _, err = run(["config", "check", str(config)], capsys)
    assert code == 1
    assert any(line.startswith(f"{config}:{expected}") for line in err.splitlines()), err
    assert "s3cr3t-id" not in err


def test_vault_auth_settings_and_their_environment(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "vault:\n  url: http://127.0.0.1:8200\n  auth:\n    method: kubernetes\n"
        "    role: credential-broker\n    jwt_path: sa/token\n",
    )
    auth = load_settings(config, environ={}).vault.auth
    assert (auth.method, auth.mount_point, auth.role) == (
        "kubernetes",
        "kubernetes",
        "credential-broker",
    )
    assert auth.jwt_path == tmp_path / "sa/token"  # relative to the config file
    with pytest.raises(InvalidFileError, match="BROKER_VAULT_TOKEN is set but vault.auth"):
        load_settings(config, environ={"BROKER_VAULT_TOKEN": "a-token-value"})
    approle = write_config(tmp_path, "vault:\n  auth:\n    method: approle\n    role_id: r1\n")
    with pytest.raises(InvalidFileError, match="set BROKER_VAULT_SECRET_ID"):
        load_settings(approle, environ={})
    secret = "b7a1c9e0-secret-id"
    loaded = load_settings(approle, environ={"BROKER_VAULT_SECRET_ID": secret}).vault.auth
    assert (loaded.role_id, loaded.secret_id, loaded.mount_point) == ("r1", secret, "approle")
    assert load_settings(write_config(tmp_path), environ={}).vault.auth.method == "token"


@pytest.mark.parametrize(
    ("issuer", "environ", "problem"),
    [
        ("https://sso.example.com", {}, "set BROKER_OIDC_CLIENT_SECRET"),
        ("http://sso.example.com", {"BROKER_OIDC_CLIENT_SECRET": "s"}, "must use https"),
    ],
)
def test_config_check_reports_what_approver_sign_in_would_refuse_at_start(
    tmp_path: Path, issuer: str, environ: dict[str, str], problem: str
) -> None:
    config = write_config(
        tmp_path, f"approvals:\n  oidc:\n    issuer: {issuer}\n    client_id: broker\n"
    )
    with pytest.raises(InvalidFileError, match=problem):
        load_settings(config, environ=environ)
    good = {"BROKER_OIDC_CLIENT_SECRET": "s"}
    load_settings(
        write_config(
            tmp_path,
            "approvals:\n  oidc:\n    issuer: https://sso.example.com\n    client_id: broker\n",
        ),
        environ=good,
    )


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
    # The subject's own form, as revoke, unfreeze and scopes write it, names the same agent.
    code, out, _ = run(
        ["token", "mint", "--config", str(config), "--agent", "agent:reports-bot"], capsys
    )
    assert code == 0
    verifier = TokenVerifier(settings.identity, load_keys(settings.state_dir))
    assert verifier.verify(out.strip()).subject == "agent:reports-bot"
    code, _, err = run(["token", "mint", "--config", str(config), "--agent", "agent:"], capsys)
    assert code == 1 and "agent names are letters, digits" in err


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


def test_sighup_replaces_the_workers_which_read_the_scopes_afresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kill -HUP <master>`: gunicorn starts new workers and lets the old ones finish; the
    new ones load the scopes (and keys) from disk, with empty caches."""
    made = make_broker(tmp_path)
    made.services.close()
    port = free_port()
    config = made.write_config(tmp_path / "broker.yaml")
    config.write_text(config.read_text() + f"listen: 127.0.0.1:{port}\nworkers: 1\n")
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess(
        [sys.executable, "-m", "broker.cli", "serve", "--config", str(config)],
        tmp_path / "serve.log",
    )
    # No AWS or Vault here: /readyz says so, but the process and its scopes serve.
    server.start(lambda: requests.get(f"{url}/healthz", timeout=1).ok, timeout=60)
    token = run(["token", "mint", "--config", str(config), "--agent", "ledger-maintainer"], capsys)
    headers = {"Authorization": f"Bearer {token.out.strip()}"}

    def services() -> set[str]:
        listed = requests.get(f"{url}/v1/scopes", headers=headers, timeout=5).json()
        return {scope["service"] for scope in listed["scopes"]}

    def workers() -> set[str]:
        assert server.process is not None
        found = subprocess.run(
            ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
        ).stdout
        return set(found.split())

    try:
        assert services() == {"ledger"}
        scopes_dir = made.services.settings.scopes_dir
        ledger = (scopes_dir / "ledger-secrets.yaml").read_text()
        (scopes_dir / "vault-audit.yaml").write_text(
            ledger.replace("service: ledger", "service: vault-audit")
        )
        before = workers()
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 30
        while not (workers() and workers().isdisjoint(before)):
            assert time.monotonic() < deadline, "the workers were not replaced"
            time.sleep(0.1)
        while not requests.get(f"{url}/healthz", timeout=1).ok:
            assert time.monotonic() < deadline, "the new worker does not answer"
            time.sleep(0.1)
        assert services() == {"ledger", "vault-audit"}
    finally:
        server.stop()


def test_circuit_limits_reach_every_upstreams_circuit(tmp_path: Path) -> None:
    from broker.issuers.vault_common import VaultCaller
    from broker.metrics import Metrics
    from broker.wiring import build_issuers

    config = write_config(
        tmp_path,
        "limits:\n  circuit_failures: 3\n  circuit_cooldown: 45s\n"
        "vault:\n  url: http://127.0.0.1:8200\n",
    )
    settings = load_settings(config, environ={"BROKER_VAULT_TOKEN": "a-given-token"})
    assert (settings.circuit_failures, settings.circuit_cooldown_seconds) == (3, 45.0)
    issuers = build_issuers(settings, Metrics())
    circuits = [issuers["aws"].circuit]  # type: ignore[attr-defined]
    for name in ("vault", "database"):
        caller = issuers[name].caller  # type: ignore[attr-defined]
        assert isinstance(caller, VaultCaller)
        circuits.append(caller.circuit)
    assert [(c.name, c.threshold, c.cooldown) for c in circuits] == [
        ("aws", 3, 45.0),
        ("vault", 3, 45.0),
        ("database", 3, 45.0),
    ]
    bad = write_config(tmp_path, "limits:\n  circuit_failures: 0\n  circuit_cooldown: 2h\n")
    with pytest.raises(InvalidFileError) as refused:
        load_settings(bad, environ={})
    reasons = [p.reason for p in refused.value.problems]
    assert "limits.circuit_failures must be between 1 and 100, got 0" in reasons
    assert "limits.circuit_cooldown must be 1s to 10m" in reasons
