"""The kill switch reaches `broker creds`' local cache: revoked credentials are never
printed again, and disappear from the cache file (issue 16: they were printed, exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from broker_client import BrokerClientError
from broker_client.cli import EXIT_FROZEN, EXIT_UNREACHABLE

from broker.guard.revocation import RevokeTarget
from tests.client.conftest import LiveBroker, start_live_broker
from tests.client.test_creds_cli import READ_ARGS, posts, run
from tests.fixtures.cli import CliResult

# Always ask the broker whether the cached copy still stands (the default trusts its
# answer for 5 s; the tests do not wait).
CHECK_NOW = [*READ_ARGS, "--check-interval", "0"]


@pytest.fixture()
def env(live: LiveBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("BROKER_URL", live.url)
    monkeypatch.setenv("BROKER_TOKEN", live.token())
    monkeypatch.setenv("BROKER_CACHE_DIR", str(cache))
    return cache


def cached_request_ids(cache: Path) -> list[str]:
    return [
        json.loads(p.read_text())["issued"]["request_id"]
        for p in cache.glob("*.json")
        if json.loads(p.read_text()).get("kind") == "issued"
    ]


def issued(result: CliResult) -> dict[str, str]:
    assert result.code == 0, result.err
    return dict(json.loads(result.out)["credentials"])


def test_after_the_kill_switch_cached_credentials_are_never_printed(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = issued(run(CHECK_NOW, capsys))
    assert issued(run(CHECK_NOW, capsys)) == first  # confirmed by the broker, then cached
    assert posts(live) == 1
    [request_id] = cached_request_ids(env)
    live.services.kill_switch.revoke(
        RevokeTarget(agent="agent:payments-copilot"), "admin:ops", "kill switch drill"
    )
    code, out, err = run(CHECK_NOW, capsys)
    assert (code, out) == (EXIT_FROZEN, "")
    assert f"cached credentials of request {request_id} no longer stand (frozen: " in err
    assert first["secret_access_key"] not in out + err
    assert cached_request_ids(env) == []  # gone from the cache file


def test_one_revoked_request_is_replaced_by_new_credentials(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_TOKEN", live.token("ledger-maintainer"))
    vault = ["--service", "ledger", "--environment", "prod", "--backend", "vault"]
    first = issued(run([*vault, "--check-interval", "0"], capsys))
    [request_id] = cached_request_ids(env)
    report = live.services.kill_switch.revoke(
        RevokeTarget(request_id=request_id), "admin:ops", "leaked in a log"
    )
    assert report.frozen is None and report.ok  # a single request: the agent may go on
    assert live.client("ledger-maintainer").issuance(request_id).status == "revoked"
    result = run([*vault, "--check-interval", "0"], capsys)
    second = issued(result)
    assert second["token"] != first["token"] and second["accessor"] != first["accessor"]
    assert "no longer stand (revoked: revoked by the kill switch)" in result.err
    assert request_id not in cached_request_ids(env)


def test_the_default_trusts_the_brokers_word_for_seconds_only(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued(run(READ_ARGS, capsys))
    served = len(live.requests)
    issued(run(READ_ARGS, capsys))  # within 5 s of the broker's answer: no call
    assert len(live.requests) == served
    issued(run([*READ_ARGS, "--check-interval", "0"], capsys))
    assert live.requests[served:] == [f"GET /v1/issuances/{cached_request_ids(env)[0]}"]


def test_an_unreachable_broker_fails_closed_unless_told_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, stop = start_live_broker(tmp_path)
    monkeypatch.setenv("BROKER_URL", broker.url)
    monkeypatch.setenv("BROKER_TOKEN", broker.token())
    monkeypatch.setenv("BROKER_CACHE_DIR", str(tmp_path / "cache"))
    first = issued(run(CHECK_NOW, capsys))
    stop()  # the same URL now refuses connections
    code, out, err = run(CHECK_NOW, capsys)
    assert (code, out) == (EXIT_UNREACHABLE, "")
    assert "cached credentials are not used while the broker cannot confirm" in err
    allowed = run([*CHECK_NOW, "--offline", "cached"], capsys)
    assert issued(allowed) == first
    assert "warning: the broker cannot be reached" in allowed.err


def test_the_issuance_endpoint_answers_only_for_the_agents_own(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued(run(CHECK_NOW, capsys))
    [request_id] = cached_request_ids(env)
    state = live.client().issuance(request_id)
    assert (state.status, state.stands, state.reason) == ("active", True, None)
    with pytest.raises(BrokerClientError) as other:
        live.client("ledger-maintainer").issuance(request_id)
    assert other.value.code == "not_found"
    live.clock.advance(3601)
    assert live.client().issuance(request_id).status == "expired"
    live.freeze()
    frozen = live.client().issuance(request_id)
    assert frozen.status == "frozen" and "kill switch drill" in (frozen.reason or "")


STAGING = ["--service", "payments", "--environment", "staging", "--region", "us-east-1"]


def test_the_kill_switch_empties_every_cached_copy_of_the_agent_not_only_the_one_asked(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials cached by other commands of the same agent (another environment) were
    revoked too: they leave the cache when a revocation is found, while another agent's
    standing copy stays."""
    monkeypatch.setenv("BROKER_TOKEN", live.token("ledger-maintainer"))
    issued(run(["--service", "ledger", "--environment", "prod", "--backend", "vault"], capsys))
    [ledger] = cached_request_ids(env)
    monkeypatch.setenv("BROKER_TOKEN", live.token())
    issued(run(CHECK_NOW, capsys))
    issued(run([*STAGING, "--check-interval", "0"], capsys))
    assert len(cached_request_ids(env)) == 3
    live.services.kill_switch.revoke(
        RevokeTarget(agent="agent:payments-copilot"), "admin:ops", "kill switch drill"
    )
    code, _, err = run(CHECK_NOW, capsys)
    assert code == EXIT_FROZEN, err
    assert cached_request_ids(env) == [ledger]  # the staging copy went too


def test_a_copy_that_still_stands_stays_when_another_is_revoked(
    live: LiveBroker, env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued(run(CHECK_NOW, capsys))
    [prod] = cached_request_ids(env)
    staging = issued(run([*STAGING, "--check-interval", "0"], capsys))
    [kept] = [r for r in cached_request_ids(env) if r != prod]
    live.services.kill_switch.revoke(
        RevokeTarget(service="payments", environment="prod"), "admin:ops", "prod only"
    )
    assert run(CHECK_NOW, capsys).code == EXIT_FROZEN
    assert cached_request_ids(env) == [kept]  # asked, and still standing
    before = posts(live)
    assert issued(run([*STAGING, "--check-interval", "0"], capsys)) == staging
    assert posts(live) == before  # served from the cache
