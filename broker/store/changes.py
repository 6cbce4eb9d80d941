"""Request changes, announced: a long poll wakes when its request changes.

An agent waiting on ``GET /v1/requests/<id>?wait=N`` used to re-read the store every
0.25 s. Now every change of a request (a decision, a transition) is announced:

- :class:`LocalChanges` (SQLite, one process): a condition variable per process, signalled
  after the changing transaction commits;
- :class:`PostgresChanges` (replicas): the changing transaction also sends ``NOTIFY
  broker_requests, '<request id>'`` (PostgreSQL delivers it at commit, to every listening
  session); each process keeps one ``LISTEN`` connection, opened on first use, whose thread
  wakes that process's waiters. A decision taken on one replica wakes the long poll held
  by another at once.

Waiters still re-read the store every :data:`FALLBACK_SECONDS`, so a lost notification
(the listening connection dropped) delays an answer, never loses it. A waiter takes a
:meth:`mark` *before* reading the request, so a change between its read and its wait is
not missed.
"""

from __future__ import annotations

import logging
import os
import threading

from cachetools import LRUCache
from sqlalchemy import text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

CHANNEL = "broker_requests"
#: How often a waiter re-reads the store even without an announcement.
FALLBACK_SECONDS = 2.0
_RECONNECT_SECONDS = 1.0


class LocalChanges:
    """Changes announced within this process."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        # request id -> how many changes were announced; old ids fall out (a waiter that
        # finds its id gone sees a different count, re-reads, and takes a new mark).
        self._counts: LRUCache[str, int] = LRUCache(maxsize=100_000)

    def publish(self, connection: Connection, request_id: str) -> None:
        """Within the changing transaction: nothing to do in one process."""

    def changed(self, request_id: str) -> None:
        """After the change committed: wake this process's waiters on ``request_id``."""
        with self._condition:
            self._counts[request_id] = self._counts.get(request_id, 0) + 1
            self._condition.notify_all()

    def mark(self, request_id: str) -> int:
        with self._condition:
            return self._counts.get(request_id, 0)

    def wait(self, request_id: str, mark: int, timeout: float) -> bool:
        """Until ``request_id`` changes after ``mark`` (True) or ``timeout`` passes."""
        self._ensure_listening()
        timeout = max(0.0, min(timeout, FALLBACK_SECONDS))
        with self._condition:
            return self._condition.wait_for(
                lambda: self._counts.get(request_id, 0) != mark, timeout
            )

    def _ensure_listening(self) -> None:
        """Nothing to listen to in one process."""

    def close(self) -> None:
        """Nothing to release."""


class PostgresChanges(LocalChanges):
    """Changes announced across every process and replica on one PostgreSQL database."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._start_lock = threading.Lock()

    def publish(self, connection: Connection, request_id: str) -> None:
        """Within the changing transaction: PostgreSQL sends it to listeners at commit."""
        connection.execute(
            text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": request_id}
        )

    def _ensure_listening(self) -> None:
        # Started on first wait, in the process that waits (gunicorn forks workers after
        # the app is built; a thread does not survive a fork).
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            self._pid = os.getpid()
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._listen, name="broker-request-changes", daemon=True
            )
            self._thread.start()

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    while not self._stop.is_set():
                        for notice in connection.notifies(timeout=1.0):
                            self.changed(notice.payload)
            except psycopg.Error as e:
                # Waiters fall back to re-reading the store meanwhile.
                log.warning("request change listener lost its connection: %s", type(e).__name__)
                self._stop.wait(_RECONNECT_SECONDS)
            finally:
                self._listening.clear()

    def listening(self, timeout: float) -> bool:
        """Start listening (if not yet) and say whether it is, within ``timeout``."""
        self._ensure_listening()
        return self._listening.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=5)
