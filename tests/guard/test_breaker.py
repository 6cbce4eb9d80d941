"""The circuit breaker: N denials, N destructive requests or N out-of-scope requests within
the window freeze the agent (shared store: every replica) and alert the approvers with the
evidence. The alerts go to a recording notifier passed in through build_services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.config import BreakerSettings
from broker.guard.revocation import RevokeTarget
from tests.fixtures.broker import Broker
from tests.guard.helpers import (
    AGENT,
    DELETE,
    OTHER_AGENT,
    READ,
    WRITE,
    RecordingNotifier,
    guard_broker,
)

BREAKER = BreakerSettings(
    window_seconds=600, max_denials=3, max_destructive_requests=3, max_out_of_scope=2
)
DENIED = {**READ, "environment": "qa"}  # 404 environment: a denial, not out of scope
OUT_OF_SCOPE = {**WRITE, "resources": ["arn:aws:s3:::payroll-prod-data/salaries.csv"]}


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Broker, RecordingNotifier]:
    return guard_broker(tmp_path, breaker=BREAKER)


def post(broker: Broker, body: dict[str, Any], agent: str = AGENT) -> tuple[int, Any]:
    response = broker.post("/v1/credentials", body, agent=agent)
    return response.status_code, response.json


def assert_frozen(broker: Broker, agent: str = AGENT) -> None:
    status, body = post(broker, READ, agent)
    assert (status, body["error"]) == (403, "frozen"), body
    assert "circuit breaker" in body["message"] and "broker unfreeze" in body["message"]


def test_n_denials_freeze_the_agent_and_alert_with_the_evidence(
    made: tuple[Broker, RecordingNotifier],
) -> None:
    broker, notifier = made
    for _ in range(BREAKER.max_denials - 1):
        assert post(broker, DENIED)[0] == 404
    assert notifier.alerts == [] and broker.services.store.active_freezes() == []
    assert post(broker, DENIED)[0] == 404  # the Nth still gets its own answer...
    assert_frozen(broker)  # ...and everything after it is refused
    [(text, evidence)] = notifier.alerts
    assert text == (
        f"Agent agent:{AGENT} was frozen by the circuit breaker: 3 denial events in 10 min."
    )
    assert evidence.count("request denied: scope shop has no environment 'qa'") == 3
    [freeze] = broker.services.store.active_freezes()
    assert (freeze.kind, freeze.target, freeze.created_by) == (
        "agent",
        f"agent:{AGENT}",
        "circuit-breaker",
    )
    [trip] = [r for r in broker.services.store.recent_audit() if r.action == "breaker_trip"]
    assert trip.outcome == "frozen" and trip.details["kind"] == "denial"
    assert trip.details["count"] == 3 and trip.details["evidence"] == evidence


def test_n_destructive_requests_freeze_the_agent(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    ids = [post(broker, DELETE)[1]["request_id"] for _ in range(BREAKER.max_destructive_requests)]
    assert len(set(ids)) == 3  # each was opened for approval (delete asks are not refused)
    assert_frozen(broker)
    [(text, evidence)] = notifier.alerts
    assert "3 destructive events in 10 min" in text
    assert sum(line.startswith("request pending") for line in evidence) == 2
    # The frozen agent cannot collect what is already approved, either.
    approvals = broker.services.approvals
    approvals.decide(ids[0], "carol", "approve", "link")
    approvals.decide(ids[0], "dave", "approve", "link")
    broker.clock.advance(600)  # the tier's delay
    response: Any = broker.client.post(
        f"/v1/requests/{ids[0]}/credentials", headers=broker.headers(AGENT)
    )
    assert (response.status_code, response.json["error"]) == (403, "frozen")
    assert broker.issuers["aws"].calls == []


def test_write_requests_are_not_destructive(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    for _ in range(3):
        assert post(broker, WRITE)[0] == 202
    assert post(broker, READ)[0] == 200
    assert notifier.alerts == []


def test_n_out_of_scope_requests_freeze_the_agent(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    status, body = post(broker, OUT_OF_SCOPE)
    assert (status, body["field"]) == (400, "resources")
    assert post(broker, {**READ, "service": "payroll"})[0] == 404  # a scope that does not exist
    assert_frozen(broker)
    [(text, evidence)] = notifier.alerts
    assert "2 out of scope events in 10 min" in text
    assert any("payroll-prod-data" in line for line in evidence)


def test_asking_for_a_scope_that_does_not_name_the_agent_is_out_of_scope(
    made: tuple[Broker, RecordingNotifier],
) -> None:
    broker, notifier = made
    for _ in range(BREAKER.max_out_of_scope):
        status, body = post(broker, READ, agent="stray-bot")
        assert (status, body["error"]) == (403, "forbidden")
    [freeze] = broker.services.store.active_freezes()
    assert freeze.target == "agent:stray-bot"
    [(text, evidence)] = notifier.alerts
    assert "agent:stray-bot" in text and "2 out of scope events" in text
    assert evidence[0] == "request denied: agent agent:stray-bot may not request scope shop"


def test_only_events_within_the_window_count(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    post(broker, DENIED)
    post(broker, DENIED)
    broker.clock.advance(BREAKER.window_seconds + 1)  # those two slide out of the window
    post(broker, DENIED)
    post(broker, DENIED)
    assert post(broker, READ)[0] == 200
    assert notifier.alerts == []
    post(broker, DENIED)  # three within ten minutes
    assert_frozen(broker)


def test_kinds_are_counted_apart(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    post(broker, DENIED)
    post(broker, DENIED)
    post(broker, OUT_OF_SCOPE)
    post(broker, DELETE)
    post(broker, DELETE)
    assert post(broker, READ)[0] == 200
    assert notifier.alerts == []


def test_another_agent_is_unaffected_and_a_frozen_agent_trips_once(
    made: tuple[Broker, RecordingNotifier],
) -> None:
    broker, notifier = made
    for _ in range(BREAKER.max_denials):
        post(broker, DENIED)
    for _ in range(5):
        assert_frozen(broker)  # frozen refusals are not counted again
    assert post(broker, READ, OTHER_AGENT)[0] == 200
    assert post(broker, WRITE, OTHER_AGENT)[0] == 202
    assert len(notifier.alerts) == 1
    assert len(broker.services.store.active_freezes()) == 1


def test_the_freeze_holds_on_every_replica(
    made: tuple[Broker, RecordingNotifier], tmp_path: Path
) -> None:
    broker, _ = made
    replica, _ = guard_broker(tmp_path, breaker=BREAKER)  # same state dir: same SQLite store
    assert post(replica, READ)[0] == 200
    for _ in range(BREAKER.max_denials):
        post(broker, DENIED)
    replica.services.guard.forget_freezes()  # replicas re-read freezes within a second
    assert_frozen(replica)
    replica.services.close()


def test_the_breaker_trips_when_slack_is_down(tmp_path: Path) -> None:
    """The alert failing must not turn the refusal into a 500 nor lose the freeze."""
    broker, notifier = guard_broker(
        tmp_path, breaker=BREAKER, notifier=RecordingNotifier(fail_alerts=True)
    )
    statuses = [post(broker, DENIED)[0] for _ in range(BREAKER.max_denials)]
    assert statuses == [404] * BREAKER.max_denials
    assert_frozen(broker)
    ids = [post(broker, DELETE, OTHER_AGENT)[0] for _ in range(BREAKER.max_destructive_requests)]
    assert ids == [202] * BREAKER.max_destructive_requests  # the tripping request too
    assert_frozen(broker, OTHER_AGENT)
    failures = [
        r.reason
        for r in broker.services.store.recent_audit()
        if (r.action, r.outcome) == ("notify", "failed")
    ]
    assert failures == ["slack alert failed: ratelimited"] * 2


def test_lifting_the_freeze_starts_the_count_again(
    made: tuple[Broker, RecordingNotifier],
) -> None:
    """The operator unfroze the agent after reading the evidence: the refusals that tripped
    the breaker are not counted again, or the agent's next refusal would freeze it at once."""
    broker, notifier = made
    for _ in range(BREAKER.max_denials):
        post(broker, DENIED)
    assert_frozen(broker)
    for _ in range(BREAKER.max_out_of_scope - 1):
        post(broker, OUT_OF_SCOPE, OTHER_AGENT)  # another agent's count: kept
    target = RevokeTarget(agent=f"agent:{AGENT}")
    lifted = broker.services.kill_switch.unfreeze(target, "ops", "looked at it")
    broker.clock.advance(max(0.0, lifted.effective_at - broker.clock.now) + 1)
    assert post(broker, DENIED)[0] == 404
    assert post(broker, READ)[0] == 200  # not frozen again by one more refusal
    for _ in range(BREAKER.max_denials - 1):
        post(broker, DENIED)
    assert_frozen(broker)  # a full count trips it again
    post(broker, OUT_OF_SCOPE, OTHER_AGENT)
    assert_frozen(broker, OTHER_AGENT)
    assert len(notifier.alerts) == 3
