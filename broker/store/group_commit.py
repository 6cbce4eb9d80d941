"""Group commit for the audit chain: many concurrent appends, one transaction.

Every request writes at least one audit record, and every append takes the chain's head
lock. Under load (session-start storms, cached reads at thousands per second) one
transaction per record makes the lock the bottleneck, and SQLite's busy-wait turns it into
latency. Here concurrent appends of one process are queued and written by one thread, many
per transaction, in submission order. Each caller still waits until its record is committed:
nothing is acknowledged before it is durable, so a crash right after a response loses no
record.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MAX_BATCH = 256

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None


class GroupCommitter(Generic[Item, Result]):
    """Runs ``write_batch(items) -> results`` on one thread for everything queued at once."""

    def __init__(
        self, write_batch: Callable[[list[Item]], list[Result]], name: str = "audit-writer"
    ) -> None:
        self.write_batch = write_batch
        self.name = name
        self._queue: queue.SimpleQueue[_Pending[Item, Result] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is waiting; return its result once committed."""
        self._ensure_running()
        pending: _Pending[Item, Result] = _Pending(item)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _ensure_running(self) -> None:
        # A thread does not survive fork: gunicorn workers each start their own.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            try:
                results = self.write_batch([pending.item for pending in batch])
            except BaseException:  # noqa: BLE001 - retried one by one below
                self._one_by_one(batch)
                continue
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
                pending.done.set()

    def _one_by_one(self, batch: list[_Pending[Item, Result]]) -> None:
        """A failed batch is retried item by item, so one bad item fails only its caller."""
        for pending in batch:
            try:
                [pending.result] = self.write_batch([pending.item])
            except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
                pending.error = error
            pending.done.set()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            self._queue.put(None)
            self._thread.join(timeout=5)
