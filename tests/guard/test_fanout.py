"""Many revocations at once: bounded, concurrent, each reported, none hiding another."""

from __future__ import annotations

import contextvars
import threading

import pytest

from broker.errors import UpstreamUnavailable
from broker.guard.fanout import Attempt, attempt_each


def test_calls_overlap_up_to_the_bound_and_never_beyond() -> None:
    # Each call waits until four are in flight: run one after another, the first would
    # wait in vain and break the barrier.
    together = threading.Barrier(4, timeout=10)
    lock = threading.Lock()
    in_flight, most = 0, 0

    def act(_item: int) -> None:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        together.wait()
        with lock:
            in_flight -= 1

    attempts = attempt_each(list(range(12)), act, concurrency=4)
    assert [a.error for a in attempts] == [None] * 12
    assert most == 4


def test_every_item_has_its_own_outcome_in_order(caplog: pytest.LogCaptureFixture) -> None:
    def act(item: int) -> None:
        if item == 3:
            raise UpstreamUnavailable("vault is down", "vault")
        if item == 5:
            raise RuntimeError("a bug")

    attempts = attempt_each(list(range(8)), act, concurrency=3)
    assert [a.item for a in attempts] == list(range(8))
    errors = {a.item: a.error for a in attempts if a.error}
    assert errors == {3: "vault is down", 5: "unexpected error (see the broker's log)"}
    assert all(a.seconds >= 0 for a in attempts)
    assert "revocation failed unexpectedly" in caplog.text


def test_then_runs_in_the_calling_thread_with_the_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("req-42")
    seen: list[tuple[int, str, int]] = []
    lock = threading.Lock()

    def act(item: int) -> None:
        assert request_id.get() == "req-42"

    def then(attempt: Attempt[int]) -> None:
        with lock:
            seen.append((attempt.item, request_id.get(), threading.get_ident()))

    attempt_each(list(range(6)), act, concurrency=3, then=then)
    assert sorted(item for item, _, _ in seen) == list(range(6))
    assert {rid for _, rid, _ in seen} == {"req-42"}
    assert threading.get_ident() not in {thread for _, _, thread in seen}


@pytest.mark.parametrize("concurrency", [1, 8])
def test_no_items_or_one_at_a_time(concurrency: int) -> None:
    assert attempt_each([], lambda _i: None, concurrency) == []
    done: list[int] = []
    attempt_each([1, 2, 3], done.append, concurrency)
    assert sorted(done) == [1, 2, 3]
