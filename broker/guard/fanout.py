"""Revoke many credentials at once: one upstream call per credential, a bounded number at a
time, each timed, none able to stop the others.

The kill switch must end a thousand credentials in seconds; one call after another is
bound by the upstream's latency (a Vault token revocation takes a millisecond or two, a
database login's several: its role is dropped in PostgreSQL). A bounded pool keeps the
upstreams from being flooded during an incident, when they may be struggling already.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from broker.errors import BrokerError

log = logging.getLogger(__name__)
T = TypeVar("T")

# Unless the settings say otherwise (limits.revocation_concurrency).
DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class Attempt(Generic[T]):
    """How one revocation went: ``error`` is None when the upstream confirmed it."""

    item: T
    error: str | None
    seconds: float


def attempt_each(
    items: Sequence[T],
    act: Callable[[T], None],
    concurrency: int,
    then: Callable[[Attempt[T]], None] = lambda _attempt: None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Attempt[T]]:
    """Run ``act`` on every item, at most ``concurrency`` at a time; one attempt per item,
    in the items' order. ``then`` runs on each attempt in the thread that made it (an audit
    record written there is committed together with the other threads' records).

    A :class:`BrokerError` is that item's failure, reported with its message; anything else
    is a bug, logged and reported as a failure too, so one bad call never hides what
    happened to the others (and never counts as done).
    """

    def attempt(item: T) -> Attempt[T]:
        started = clock()
        error: str | None = None
        try:
            act(item)
        except BrokerError as e:
            error = e.message
        except Exception:
            log.exception("revocation failed unexpectedly")
            error = "unexpected error (see the broker's log)"
        result = Attempt(item, error, clock() - started)
        then(result)
        return result

    if len(items) <= 1 or concurrency <= 1:
        return [attempt(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        # Each call runs in a copy of the caller's context: an HTTP request's id (Flask
        # keeps it in a context variable) still reaches the audit records written there.
        futures = [pool.submit(contextvars.copy_context().run, attempt, item) for item in items]
        return [future.result() for future in futures]
