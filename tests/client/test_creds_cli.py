"""`broker creds` against a broker answering over real HTTP, in-process and as a process."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest
from broker_client import RequestState
from broker_client.cache import LocalCache
from broker_client.cli import (
    EXIT_DENIED,
    EXIT_EXPIRED,
    EXIT_FROZEN,
    EXIT_PENDING,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from broker_client.options import duration, token_identity
from broker_client.progress import Progress, describe

from tests.client.conftest import LiveBroker, free_port
from tests.fixtures.cli import CliResult, run_cli

BROKER = str(Path(sys.executable).with_name("broker"))
READ_ARGS = ["--service", "payments", "--environment", "prod", "--region", "us-east-1"]
WRITE_ARGS = [
    *READ_ARGS,
    "--tier",
    "write",
    "--resource",
    "arn:aws:s3:::payments-prod-invoices/2026/11/batch.csv",
    "--justification",
    "re-upload the corrected November batch",
]


@pytest.fixture()
def env(live: LiveBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """BROKER_URL/BROKER_TOKEN/BROKER_CACHE_DIR for the payments agent; the cache dir."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BROKER_URL", live.url)
    monkeypatch.setenv("BROKER_TOKEN", live.token())
    monkeypatch.setenv("BROKER_CACHE_DIR", str(cache))
    monkeypatch.delenv("BROKER_TOKEN_FILE", raising=False)
    return cache


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    return run_cli(capsys, "creds", *argv)


def posts(live: LiveBroker) -> int:
    return live.requests.count("POST /v1/credentials")


def test_credential_process_output_and_the_cache_hit_that_skips_the_broker(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*READ_ARGS, "--format", "credential-process"], capsys)
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {
        "Version",
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    }
    assert document["Version"] == 1 and document["AccessKeyId"].startswith("ASIATEST")
    expiration = dt.datetime.fromisoformat(document["Expiration"].replace("Z", "+00:00"))
    assert 3500 < expiration.timestamp() - live.clock() <= 3600
    [entry] = list(env.glob("*.json"))
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(env.stat().st_mode) == 0o700
    served = len(live.requests)
    again = run([*READ_ARGS, "--format", "credential-process"], capsys)
    assert again == (0, out, "")
    assert len(live.requests) == served  # answered from the local cache
    assert run([*READ_ARGS, "--format", "json", "--no-cache"], capsys)[0] == 0
    assert len(live.requests) == served + 1


def test_the_cache_is_keyed_by_request_and_token_subject(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(READ_ARGS, capsys)
    monkeypatch.setenv("BROKER_TOKEN", live.token())  # a fresh token, same agent
    run(READ_ARGS, capsys)
    assert posts(live) == 1
    run([*READ_ARGS, "--region", "eu-west-1"], capsys)
    run([*READ_ARGS, "--duration", "15m"], capsys)
    assert posts(live) == 3
    live.services.settings.scopes_dir.joinpath("payments.yaml").write_text(
        live.services.settings.scopes_dir.joinpath("payments.yaml")
        .read_text()
        .replace(
            "  - subject: agent:payments-copilot",
            "  - subject: agent:payments-copilot\n  - subject: agent:other-bot",
        )
    )
    live.services.scopes.reload()
    monkeypatch.setenv("BROKER_TOKEN", live.token("other-bot"))
    code, out, _ = run(READ_ARGS, capsys)
    assert code == 0 and posts(live) == 4


def test_cache_files_others_could_read_are_not_trusted(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(READ_ARGS, capsys)
    [entry] = list(env.glob("*.json"))
    entry.chmod(0o644)
    run(READ_ARGS, capsys)
    assert posts(live) == 2
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600  # rewritten, private again


def test_env_json_and_vault_formats(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run([*READ_ARGS, "--format", "env"], capsys)
    names = [line.split("=")[0] for line in out.splitlines()]
    assert code == 0 and names == [
        "export AWS_ACCESS_KEY_ID",
        "export AWS_DEFAULT_REGION",
        "export AWS_REGION",
        "export AWS_SECRET_ACCESS_KEY",
        "export AWS_SESSION_TOKEN",
        "export BROKER_CREDENTIALS_EXPIRATION",
    ]
    code, out, _ = run([*READ_ARGS, "--format", "json"], capsys)
    body = json.loads(out)
    assert body["status"] == "issued" and body["credentials"]["secret_access_key"].startswith("sk-")
    monkeypatch.setenv("BROKER_TOKEN", live.token("ledger-maintainer"))
    ledger = ["--service", "ledger", "--environment", "prod", "--backend", "vault"]
    code, out, _ = run([*ledger, "--format", "vault"], capsys)
    lines = out.splitlines()
    assert code == 0
    assert "export VAULT_ADDR=http://127.0.0.1:8200" in lines
    assert any(line.startswith("export VAULT_TOKEN=hvs.") for line in lines)


def test_usage_errors_reach_no_broker(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = ["--service", "ledger", "--environment", "prod", "--backend", "vault"]
    cases = [
        [*ledger, "--format", "credential-process"],
        [*READ_ARGS, "--format", "vault"],
        [*READ_ARGS, "--duration", "soon"],
        [*READ_ARGS, "--duration", "0"],
        [*READ_ARGS, "--tier", "admin"],
        [*READ_ARGS, "--token-file", "/nonexistent"],
    ]
    for argv in cases:
        code, out, err = run(argv, capsys)
        assert (code, out) == (EXIT_USAGE, ""), (argv, err)
        assert "Error:" in err
    monkeypatch.delenv("BROKER_TOKEN")
    code, _, err = run(READ_ARGS, capsys)
    assert code == EXIT_USAGE and "no agent token" in err
    assert live.requests == []


def test_a_token_file_is_read_for_each_call(
    live: LiveBroker,
    env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BROKER_TOKEN")
    code, _, err = run([*READ_ARGS, "--token-file", str(tmp_path / "missing")], capsys)
    assert code == EXIT_USAGE and "cannot read the token file" in err
    token_file = tmp_path / "token"
    token_file.write_text(live.token() + "\n")
    assert run([*READ_ARGS, "--token-file", str(token_file)], capsys)[0] == 0
    token_file.write_text("garbage")
    code, _, err = run([*READ_ARGS, "--token-file", str(token_file), "--no-cache"], capsys)
    assert code == 1 and "(unauthenticated)" in err


def test_an_escalation_waits_for_approval_then_collects(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    approver = live.decide_when_pending([("alice", "approve")])
    code, out, err = run(WRITE_ARGS, capsys)
    approver.join()
    assert code == 0, err
    request_id = json.loads(out)["request_id"]
    assert f"request {request_id} needs 1 approval(s)" in err
    assert f"{live.url}/requests/{request_id}" in err
    assert re.search(
        rf"{request_id}: pending 0/1 approvals \(request expires in (29:\d\d|30:00)\)", err
    )
    assert f"{request_id}: approved, collecting" in err
    assert live.services.store.get_request(request_id).status == "collected"  # type: ignore[union-attr]
    served = len(live.requests)
    assert run(WRITE_ARGS, capsys)[1] == out  # collected credentials are cached too
    assert len(live.requests) == served


def test_a_denied_escalation_exits_3_with_the_reason(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live.decide_when_pending([("bob", "deny")])
    code, out, err = run(WRITE_ARGS, capsys)
    assert (code, out) == (EXIT_DENIED, "")
    assert "denied by bob: not now (request req_" in err
    assert list(env.glob("*.json")) == []  # decided: the next run asks afresh


def test_no_wait_exits_7_and_the_next_run_resumes_the_same_request(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run([*WRITE_ARGS, "--no-wait"], capsys)
    assert (code, out) == (EXIT_PENDING, "")
    assert "run the same command again to keep waiting" in err
    record = live.pending()
    live.decide_when_pending([("alice", "approve")], after_polls=3)
    code, out, err = run(WRITE_ARGS, capsys)
    assert code == 0, err
    assert f"resuming request {record.id}" in err
    assert json.loads(out)["request_id"] == record.id
    assert posts(live) == 1  # one request, not two


def test_an_open_request_that_expired_exits_4(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*WRITE_ARGS, "--wait-timeout", "0"], capsys)[0] == EXIT_PENDING
    live.clock.advance(1801)  # the tier's requests expire after 30 minutes pending
    code, out, err = run(WRITE_ARGS, capsys)
    assert (code, out) == (EXIT_EXPIRED, "")
    assert err.splitlines()[-1].startswith("expired: request req_")


def test_frozen_exits_5(live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    live.freeze()
    code, out, err = run(READ_ARGS, capsys)
    assert (code, out) == (EXIT_FROZEN, "")
    assert err.startswith("frozen: agent agent:payments-copilot (kill switch drill)")


def test_broker_errors_exit_1_with_code_and_retry_hint(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live.issuers["aws"].down = True
    code, out, err = run(READ_ARGS, capsys)
    assert (code, out) == (1, "")
    assert err == "error: aws is down (upstream_unavailable)\n"


def test_an_unreachable_broker_exits_6(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", f"http://127.0.0.1:{free_port()}")
    code, out, err = run(READ_ARGS, capsys)
    assert (code, out) == (EXIT_UNREACHABLE, "")
    assert "unreachable: cannot reach the broker at http://127.0.0.1:" in err
    assert "connection refused" in err


def test_aws_sdk_credential_process_fetches_then_hits_the_cache(
    live: LiveBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore runs `broker creds` as a process and refreshes through it."""
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile broker-payments]\n"
        f"credential_process = {BROKER} creds --service payments --environment prod "
        "--region us-east-1 --format credential-process\n"
        "region = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("BROKER_URL", live.url)
    monkeypatch.setenv("BROKER_TOKEN", live.token())
    monkeypatch.setenv("BROKER_CACHE_DIR", str(tmp_path / "cache"))
    first = boto3.Session(profile_name="broker-payments").get_credentials()
    assert first is not None and first.method == "custom-process"
    frozen = first.get_frozen_credentials()
    assert (frozen.access_key or "").startswith("ASIATEST")
    second = boto3.Session(profile_name="broker-payments").get_credentials()
    assert second is not None and second.get_frozen_credentials() == frozen
    assert posts(live) == 1  # the second process answered from its cache


def test_exit_codes_of_the_process(live: LiveBroker, tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "BROKER_TOKEN": live.token(),
        "BROKER_CACHE_DIR": str(tmp_path / "cache"),
    }
    down = subprocess.run(
        [BROKER, "creds", *READ_ARGS, "--url", f"http://127.0.0.1:{free_port()}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == EXIT_UNREACHABLE and down.stdout == ""
    assert "Traceback" not in down.stderr
    live.decide_when_pending([("bob", "deny")])
    denied = subprocess.run(
        [BROKER, "creds", *WRITE_ARGS, "--url", live.url],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert denied.returncode == EXIT_DENIED and "denied by bob" in denied.stderr


# -- pieces ------------------------------------------------------------------------------


def state(status: str, now: float, **changes: object) -> RequestState:
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    values: dict[str, object] = {
        "request_id": "req_x",
        "status": status,
        "service": "payments",
        "environment": "prod",
        "region": "us-east-1",
        "tier": "delete",
        "backend": "aws",
        "resources": (),
        "approvals_required": 2,
        "approvals_received": 1,
        "delay_seconds": 600,
        "collectable_at": None,
        "collect_deadline": None,
        "expires_at": at + dt.timedelta(seconds=1500),
        "reason": None,
        **changes,
    }
    return RequestState(**values)  # type: ignore[arg-type]


def test_durations() -> None:
    assert [duration(v) for v in ("900", "15m", "1h30m", "2h", "45s")] == [
        900,
        900,
        5400,
        7200,
        45,
    ]
    for bad in ("", "0", "0m", "soon", "1d", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)


def test_status_lines() -> None:
    now = 1_800_000_000.0
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    assert describe(state("pending", now), now) == (
        "req_x: pending 1/2 approvals (request expires in 25:00)"
    )
    approved = state("approved", now, collectable_at=at + dt.timedelta(seconds=432))
    assert describe(approved, now) == "req_x: approved, delay ends in 7:12"
    assert describe(approved, now + 432) == "req_x: approved, collecting"
    assert describe(state("denied", now, reason="denied by bob: no"), now) == (
        "req_x: denied: denied by bob: no"
    )


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream = io.StringIO()
    progress = Progress(lambda: 1_800_000_000.0, live=stream)
    progress.update(state("pending", 1_800_000_000.0))
    progress.note("a note")
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r\x1b[Kreq_x: pending 1/2 approvals")
    assert "\r\x1b[Ka note\n" in text and text.endswith("\r\x1b[K")


def test_the_cache_lock_makes_a_second_process_wait(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "cache")
    waited = threading.Event()
    acquired = threading.Event()

    def second() -> None:
        with cache.lock("k", waited.set):
            acquired.set()

    with cache.lock("k", lambda: None):
        thread = threading.Thread(target=second)
        thread.start()
        assert waited.wait(10)
        assert not acquired.is_set()
    thread.join(10)
    assert acquired.is_set()


def test_token_identity_names_the_subject_never_the_token(live: LiveBroker) -> None:
    first, second = live.token(), live.token()
    assert first != second
    assert token_identity(first) == token_identity(second)
    assert "agent:payments-copilot" in token_identity(first)
    assert token_identity(live.token("ledger-maintainer")) != token_identity(first)
    opaque = token_identity("s3cr3t-opaque-token")
    assert opaque.startswith("sha256:") and "s3cr3t" not in opaque


def test_waiting_out_a_delay_says_so_and_who_was_told(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: the status said "still approved (2/2 approvals)", and "the approvers
    were notified" when no notifier was configured."""
    monkeypatch.setenv("BROKER_TOKEN", live.token("ledger-maintainer"))
    delete = ["--service", "ledger", "--environment", "prod", "--backend", "database"]
    delete += ["--tier", "delete", "--justification", "purge the duplicated test rows"]
    delete += ["--resource", "ledger.entries"]
    code, _, err = run([*delete, "--no-wait"], capsys)
    assert code == EXIT_PENDING
    assert "no approver was notified (the broker has no notifier)" in err
    assert "the approvers were notified" not in err
    record = live.pending()
    for approver in ("carol", "dave"):
        live.services.approvals.decide(record.id, approver, "approve", via="page")
    code, _, err = run([*delete, "--wait-timeout", "0"], capsys)
    assert code == EXIT_PENDING
    # The broker's clock stands still in these tests; ours runs: 15:00 or a bit less.
    assert re.search(rf"request {record.id} is approved; its mandatory delay ends in 1[45]:", err)
    assert "still approved" not in err


def _payments_plan(tmp_path: Path) -> Path:
    """terraform show -json of a plan updating one invoice object (as Terraform prints it)."""
    fixture = Path(__file__).parents[1] / "intent" / "fixtures" / "plan_s3_object_update.json"
    text = fixture.read_text().replace("acme-prod-docs", "payments-prod-invoices")
    path = tmp_path / "plan.json"
    path.write_text(text)
    return path


def test_an_intent_file_is_what_the_broker_grants(
    live: LiveBroker, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _payments_plan(tmp_path)
    approver = live.decide_when_pending([("alice", "approve")])
    args = [*READ_ARGS, "--intent", str(plan), "--justification", "apply the reviewed plan"]
    code, out, err = run(args, capsys)
    approver.join()
    assert code == 0, err
    request_id = json.loads(out)["request_id"]
    record = live.services.store.get_request(request_id)
    assert record is not None and record.tier == "write" and record.intent_sha256
    assert f"intent sha256 {record.intent_sha256[:16]}...: tier write" in err
    [call] = [c for c in live.issuers["aws"].calls if c.request_id == request_id]
    resources = {r for s in call.session_policy["Statement"] for r in s["Resource"]}
    assert resources == {"arn:aws:s3:::payments-prod-invoices/templates/invoice.html"}
    # The plan is never written to the local cache (it can hold sensitive values).
    assert all("Invoice v2" not in p.read_text() for p in env.glob("*.json"))


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--resource", "arn:aws:s3:::payments-prod-invoices/a"], "not both"),
        (["--intent", "/nonexistent/plan.json"], "cannot read the intent file"),
    ],
)
def test_intent_usage_errors_exit_2(
    live: LiveBroker,
    env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    phrase: str,
) -> None:
    args = [*READ_ARGS, *extra]
    if "--resource" in extra:
        args += ["--intent", str(_payments_plan(tmp_path))]
    code, _, err = run(args, capsys)
    assert code == EXIT_USAGE and phrase in err, err
    not_an_intent = tmp_path / "other.json"
    not_an_intent.write_text('{"Version": "2012-10-17"}')
    code, _, err = run([*READ_ARGS, "--intent", str(not_an_intent)], capsys)
    assert code == EXIT_USAGE and "neither an intent" in err, err
    assert posts(live) == 0


def test_an_intent_file_nested_too_deeply_is_a_usage_error(
    live: LiveBroker, env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON nested deeper than Python's parser recurses is refused by name, no traceback."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run([*READ_ARGS, "--intent", str(deep)], capsys)
    assert code == EXIT_USAGE and "nested too deeply" in err, err
    assert "Traceback" not in err and posts(live) == 0
