"""Calling an upstream safely: bounded retries with jittered backoff inside a deadline, and a
per-upstream circuit breaker.

Only transient failures are retried (connection errors, timeouts, 5xx, throttling). Every
retry repeats the *same* call: there is never a fallback to a broader role or policy. When
the deadline passes or the circuit is open, the caller gets :class:`UpstreamUnavailable`
and nothing is issued.

While :func:`call` runs, :func:`time_left` tells the HTTP layer underneath how long the
deadline still allows, so one attempt's socket timeouts never carry the answer past it.

Why not tenacity or pybreaker: docs/faults.md ("Why the retries and the circuit are the
broker's own") compares them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from broker.errors import UpstreamUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

# The deadline of the upstream call running in this thread: (instant, the clock it is on).
_deadline: ContextVar[tuple[float, Callable[[], float]] | None] = ContextVar(
    "upstream_deadline", default=None
)
# An attempt started just before the deadline still gets this long (a zero timeout would
# make the socket non-blocking, not quick).
MIN_ATTEMPT_SECONDS = 0.05


def time_left() -> float | None:
    """Seconds the current upstream call's deadline still allows, or None outside a call."""
    current = _deadline.get()
    if current is None:
        return None
    deadline, clock = current
    return deadline - clock()


def within_deadline(timeout: float) -> float:
    """``timeout`` for one HTTP call, shortened so it ends by the current call's deadline."""
    left = time_left()
    if left is None:
        return timeout
    return max(MIN_ATTEMPT_SECONDS, min(timeout, left))


class TransientError(Exception):
    """A failure worth retrying (the upstream may answer next time)."""


class PermanentError(Exception):
    """A failure retrying cannot fix (refused, malformed); reported at once."""


@dataclass(frozen=True)
class RetryPolicy:
    deadline_seconds: float = 10.0
    base_delay_seconds: float = 0.05
    max_delay_seconds: float = 2.0
    max_attempts: int = 6


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; let one trial through after ``cooldown``.

    While open, calls fail at once instead of piling onto a sick upstream; the first call
    after the cooldown is the trial (half-open): success closes the circuit, failure opens
    it again. The broker recovers by itself when the upstream does.
    """

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        cooldown_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown_seconds
        self.clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial_running:
                self._trial_running = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info("circuit closed", extra={"upstream": self.name})
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_running = False
            if self._opened_at is not None or self._failures >= self.threshold:
                if self._opened_at is None:
                    log.warning(
                        "circuit opened", extra={"upstream": self.name, "failures": self._failures}
                    )
                self._opened_at = self.clock()


def call(
    backend: str,
    action: Callable[[], T],
    policy: RetryPolicy,
    circuit: CircuitBreaker,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``action`` with retries; raise UpstreamUnavailable(backend) when it cannot succeed.

    ``action`` raises TransientError for what may pass and PermanentError for what will not;
    any other exception is an unusable answer: not retried, counted as a failure.
    """
    if not circuit.allow():
        raise UpstreamUnavailable(
            f"{backend} is failing; its circuit is open, retrying shortly", backend
        )
    deadline = clock() + policy.deadline_seconds
    scope = _deadline.set((deadline, clock))
    try:
        return _attempts(backend, action, policy, circuit, deadline, sleep, clock)
    finally:
        _deadline.reset(scope)


def _attempts(
    backend: str,
    action: Callable[[], T],
    policy: RetryPolicy,
    circuit: CircuitBreaker,
    deadline: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> T:
    attempt = 0
    last_reason = "no attempt made"
    while True:
        attempt += 1
        try:
            result = action()
        except PermanentError as e:
            circuit.success()  # the upstream answered: it is reachable
            raise UpstreamUnavailable(f"{backend} refused the request: {e}", backend) from e
        except TransientError as e:
            last_reason = str(e)
            delay = min(policy.max_delay_seconds, policy.base_delay_seconds * 2 ** (attempt - 1))
            delay = random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not security
            if attempt < policy.max_attempts and clock() + delay + MIN_ATTEMPT_SECONDS < deadline:
                sleep(delay)
                if clock() + MIN_ATTEMPT_SECONDS < deadline:  # a slow wake-up may eat it
                    continue
            circuit.failure()
            raise UpstreamUnavailable(
                f"{backend} is unavailable after {attempt} attempt(s): {last_reason}", backend
            ) from e
        except Exception as e:
            # Anything else (an answer the client library cannot parse, such as a
            # middlebox's HTML page) still fails closed as this upstream's 503, and still
            # counts for the circuit: a half-open trial must never leave it wedged.
            circuit.failure()
            raise UpstreamUnavailable(
                f"{backend} gave an unusable answer ({type(e).__name__})", backend
            ) from e
        circuit.success()
        return result
