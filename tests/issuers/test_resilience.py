"""Retries, the deadline and the per-upstream circuit breaker, with a fake clock."""

from __future__ import annotations

import pytest

from broker.errors import UpstreamUnavailable
from broker.issuers.resilience import (
    CircuitBreaker,
    PermanentError,
    RetryPolicy,
    TransientError,
    call,
    time_left,
    within_deadline,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


TEN_SECONDS = RetryPolicy(deadline_seconds=10)


def flaky(failures: int, error: type[Exception] = TransientError) -> object:
    state = {"calls": 0}

    def action() -> str:
        state["calls"] += 1
        if state["calls"] <= failures:
            raise error("Throttling")
        return "ok"

    action.state = state  # type: ignore[attr-defined]
    return action


def run(
    action: object,
    clock: Clock,
    circuit: CircuitBreaker,
    policy: RetryPolicy = TEN_SECONDS,
) -> str:
    return call("aws", action, policy, circuit, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]


def test_transient_failures_are_retried_with_growing_jittered_backoff() -> None:
    clock = Clock()
    action = flaky(3)
    assert run(action, clock, CircuitBreaker("aws", clock=clock)) == "ok"
    assert action.state["calls"] == 4  # type: ignore[attr-defined]
    assert len(clock.sleeps) == 3
    for attempt, delay in enumerate(clock.sleeps, start=1):
        ceiling = min(2.0, 0.05 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling


def test_retries_stop_at_the_deadline() -> None:
    clock = Clock()
    policy = RetryPolicy(deadline_seconds=0.5, base_delay_seconds=0.2, max_attempts=50)
    with pytest.raises(UpstreamUnavailable) as error:
        run(flaky(1000), clock, CircuitBreaker("aws", clock=clock), policy)
    assert error.value.backend == "aws"
    assert clock.now <= 0.5


def test_permanent_failures_are_not_retried() -> None:
    clock = Clock()
    action = flaky(1, PermanentError)
    with pytest.raises(UpstreamUnavailable) as error:
        run(action, clock, CircuitBreaker("aws", clock=clock))
    assert "refused" in error.value.message
    assert action.state["calls"] == 1  # type: ignore[attr-defined]


def test_circuit_opens_after_repeated_failures_and_recovers_by_itself() -> None:
    clock = Clock()
    circuit = CircuitBreaker("aws", threshold=3, cooldown_seconds=10, clock=clock)
    policy = RetryPolicy(deadline_seconds=1, max_attempts=1)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            run(flaky(1000), clock, circuit, policy)
    assert circuit.state == "open"
    healthy = flaky(0)
    with pytest.raises(UpstreamUnavailable) as error:
        run(healthy, clock, circuit, policy)
    assert "circuit is open" in error.value.message
    assert healthy.state["calls"] == 0  # type: ignore[attr-defined]
    clock.now += 10
    assert circuit.state == "half-open"
    assert run(healthy, clock, circuit, policy) == "ok"
    assert circuit.state == "closed"


def test_a_failed_trial_reopens_the_circuit() -> None:
    clock = Clock()
    circuit = CircuitBreaker("vault", threshold=1, cooldown_seconds=5, clock=clock)
    policy = RetryPolicy(deadline_seconds=1, max_attempts=1)
    with pytest.raises(UpstreamUnavailable):
        run(flaky(1000), clock, circuit, policy)
    clock.now += 5
    with pytest.raises(UpstreamUnavailable):
        run(flaky(1000), clock, circuit, policy)
    assert circuit.state == "open"


def test_each_attempt_is_told_the_time_the_deadline_still_allows() -> None:
    """What the HTTP layer reads to cut one call's socket timeout (see DeadlineAdapter and
    the STS issuer's read timeout): the time left, never less than a sliver, and nothing
    outside a call."""
    clock = Clock()
    seen: list[tuple[float | None, float]] = []

    def action() -> str:
        seen.append((time_left(), within_deadline(5.0)))
        raise TransientError("ReadTimeout")

    # Every wake-up comes a second late (a busy machine), so time runs out mid-retry.
    clock.sleep = lambda s: setattr(clock, "now", clock.now + s + 1.0)  # type: ignore[method-assign]
    policy = RetryPolicy(deadline_seconds=3.0, base_delay_seconds=0.01)
    with pytest.raises(UpstreamUnavailable):
        run(action, clock, CircuitBreaker("aws", clock=clock), policy)
    assert len(seen) == 3  # a fourth would have started with the deadline passed
    assert seen[0] == (3.0, 3.0)
    assert [left for left, _ in seen] == sorted((left for left, _ in seen), reverse=True)
    assert all(cut == min(5.0, left) for left, cut in seen if left is not None)
    assert time_left() is None and within_deadline(5.0) == 5.0
