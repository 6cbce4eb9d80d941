"""Rate limits per agent and scope tier: 429 with Retry-After, a sliding window, counted in
the shared store so that two broker processes on one PostgreSQL share one limit."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

import pytest

from broker.config import BreakerSettings, IdentitySettings, LocalIssuer
from broker.keys import load_keys
from broker.store.sql import SqlStore
from tests.fixtures.agent_issuer import OidcProvider
from tests.fixtures.broker import Broker
from tests.guard.helpers import (
    AGENT,
    DELETE,
    OTHER_AGENT,
    WRITE,
    RecordingNotifier,
    guard_broker,
    write_scope,
)
from tests.guard.workers import fire_requests

LIMIT = 3  # the shop scope's write tier: 3/h


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Broker, RecordingNotifier]:
    return guard_broker(tmp_path)


def write(broker: Broker, agent: str = AGENT) -> tuple[int, dict[str, object], str | None]:
    response = broker.post("/v1/credentials", WRITE, agent=agent)
    return response.status_code, response.json, response.headers.get("Retry-After")


def test_over_the_limit_is_429_with_retry_after(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    start = broker.clock()
    assert [write(broker)[0] for _ in range(LIMIT)] == [202] * LIMIT
    status, body, retry_after = write(broker)
    assert status == 429
    assert body["error"] == "rate_limited"
    assert "rate limit 3/h for write requests of shop reached" in str(body["message"])
    assert retry_after is not None and int(retry_after) == body["retry_after"]
    # Waiting that long is enough, and a second less is not (the oldest leaves the window).
    broker.clock.now = start + int(retry_after) - 2
    assert write(broker)[0] == 429
    broker.clock.now = start + int(retry_after)
    assert write(broker)[0] == 202
    assert len(notifier.opened) == LIMIT + 1  # refused requests never reached an approver


def test_the_window_slides(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, _ = made
    t0 = broker.clock()
    for offset in (0, 1200, 2400):
        broker.clock.now = t0 + offset
        assert write(broker)[0] == 202
    broker.clock.now = t0 + 3000
    status, _, retry_after = write(broker)
    assert (status, retry_after) == (429, "601")  # the request at t0 leaves at t0 + 3600
    broker.clock.now = t0 + 3600
    assert write(broker)[0] == 202  # t0 slid out of the hour
    broker.clock.now = t0 + 3601
    status, _, retry_after = write(broker)
    assert (status, retry_after) == (429, "1200")  # now t0 + 1200 is the oldest
    broker.clock.now = t0 + 1200 + 3600
    assert write(broker)[0] == 202


def test_the_limit_is_per_agent_and_per_tier(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, _ = made
    for _ in range(LIMIT):
        write(broker)
    assert write(broker)[0] == 429
    assert write(broker, OTHER_AGENT)[0] == 202  # another agent has its own count
    assert broker.post("/v1/credentials", DELETE, agent=AGENT).status_code == 202  # other tier


def test_varying_claims_do_not_buy_more_requests(tmp_path: Path, oidc: OidcProvider) -> None:
    """The limit keys on the agent (issuer and subject): tokens of one CI subject whose other
    identity claims differ (another workflow, another repository) share one count."""
    broker, _ = guard_broker(
        tmp_path,
        identity=IdentitySettings(local=LocalIssuer(), oidc=(oidc.config(required_claims=()),)),
    )
    scope = tmp_path / "scopes" / "shop.yaml"
    requester = "  - {issuer: ci, claims: {repository: 'acme/*'}}\n"
    scope.write_text(scope.read_text().replace("requesters:\n", f"requesters:\n{requester}", 1))
    assert broker.services.scopes.reload().applied

    def ci_write(workflow: str, repository: str = "acme/payments") -> int:
        token = oidc.sign(oidc.claims(workflow=workflow, repository=repository))
        headers = {"Authorization": f"Bearer {token}"}
        return int(broker.client.post("/v1/credentials", json=WRITE, headers=headers).status_code)

    assert [ci_write(f"deploy-{n}") for n in range(LIMIT)] == [202] * LIMIT
    assert ci_write("deploy-another") == 429
    assert ci_write("deploy", repository="acme/shop") == 429
    assert write(broker)[0] == 202  # the local agent has its own count


def test_refused_requests_do_not_use_up_the_limit(tmp_path: Path) -> None:
    broker, _ = guard_broker(tmp_path, breaker=BreakerSettings(max_out_of_scope=100))
    outside = {**WRITE, "resources": ["arn:aws:s3:::someone-elses-bucket/x"]}
    for _ in range(LIMIT + 2):
        assert broker.post("/v1/credentials", outside, agent=AGENT).status_code == 400
    assert [write(broker)[0] for _ in range(LIMIT)] == [202] * LIMIT


def test_being_rate_limited_does_not_trip_the_circuit_breaker(tmp_path: Path) -> None:
    broker, notifier = guard_broker(tmp_path, breaker=BreakerSettings(max_denials=2))
    for _ in range(LIMIT):
        write(broker)
    assert [write(broker)[0] for _ in range(5)] == [429] * 5
    assert broker.services.store.active_freezes() == []
    assert notifier.alerts == []


def test_two_broker_processes_on_one_postgresql_share_the_limit(
    tmp_path: Path, postgres_url: str
) -> None:
    """Each process fires at once from several threads; exactly the limit is accepted."""
    limit, threads, per_thread = 10, 4, 3  # 2 x 4 x 3 = 24 attempts for 10 slots
    write_scope(tmp_path / "scopes")
    scope = tmp_path / "scopes" / "shop.yaml"
    scope.write_text(scope.read_text().replace("rate_limit: 3/h", f"rate_limit: {limit}/h"))
    load_keys(tmp_path / "state")  # created once here, read by both processes
    SqlStore.from_url(postgres_url).close()  # the schema, before the processes race for it
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    start = context.Event()
    processes = [
        context.Process(
            target=fire_requests,
            args=(
                str(tmp_path),
                postgres_url,
                WRITE,
                AGENT,
                threads,
                per_thread,
                ready,
                start,
                results,
            ),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    try:
        for _ in processes:
            assert ready.get(timeout=120) == "ready"
        start.set()
        outcomes = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    statuses = Counter(status for outcome in outcomes for status, _ in outcome)
    assert statuses == {202: limit, 429: 2 * threads * per_thread - limit}
    assert all(len(outcome) == threads * per_thread for outcome in outcomes)
    retry_afters = [int(r) for outcome in outcomes for s, r in outcome if s == 429 and r]
    assert len(retry_afters) == statuses[429] and all(1 <= r <= 3601 for r in retry_afters)
    store = SqlStore.from_url(postgres_url)
    try:
        assert len(store.list_requests(statuses=("pending",))) == limit
    finally:
        store.close()
