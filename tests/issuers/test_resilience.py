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
