"""Long polls hold at most half of a worker's threads.

``GET /v1/requests/{id}?wait=N`` holds a thread while it waits for a decision. Agents
waiting for approvers (CI jobs queued behind one person) are ordinary, and once they held
every thread, health checks, the kill switch over HTTP and every other agent waited up to
30 s behind them. A poll beyond the limit is answered at once with the request as it
stands: the agent polls again (the client waits a second before it does).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app

_KEY = "broker.long_polls"


def slots_for(threads: int) -> int:
    """How many long polls one worker of ``threads`` threads lets wait at once."""
    return max(1, threads // 2)


@contextmanager
def waiting_slot(wait: float, threads: int) -> Iterator[float]:
    """Yield the seconds this poll may wait: ``wait`` when a slot is free, else 0."""
    if wait <= 0:
        yield 0.0
        return
    # One semaphore per app (and so per worker process); setdefault is atomic.
    slots = current_app.extensions.setdefault(_KEY, threading.BoundedSemaphore(slots_for(threads)))
    if not slots.acquire(blocking=False):
        yield 0.0
        return
    try:
        yield wait
    finally:
        slots.release()
