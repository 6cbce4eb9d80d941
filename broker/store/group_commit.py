"""Group commit for the audit chain: many concurrent appends, one transaction.

Every request writes at least one audit record, and every append takes the chain's head
lock. Under load (session-start storms, cached reads at hundreds per second) one transaction
per record makes that lock the bottleneck. Here the first caller to arrive while nobody is
writing becomes the leader: it writes its own item and everything that queued up behind it,
many per transaction, in arrival order, until the queue is empty. The others wait for their
item to be committed. Nothing is acknowledged before it is durable, so a crash right after a
response loses no record; and with no contention the leader simply writes its own item, with
no hand-off to another thread.
"""

from __future__ import annotations

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
    """Runs ``write_batch(items) -> results`` for everything queued while a write was busy."""

    def __init__(self, write_batch: Callable[[list[Item]], list[Result]]) -> None:
        self.write_batch = write_batch
        self._queue: list[_Pending[Item, Result]] = []
        self._writing = False
        self._lock = threading.Lock()

    def submit(self, item: Item) -> Result:
        """Write ``item`` with whatever else is waiting; return its result once committed."""
        return self.submit_all([item])[0]

    def submit_all(self, items: list[Item]) -> list[Result]:
        """Write ``items``, in order, with whatever else is waiting (a caller with many
        items shares transactions instead of committing each); return their results once
        all are committed, or raise the first item's error."""
        pendings: list[_Pending[Item, Result]] = [_Pending(item) for item in items]
        with self._lock:
            self._queue.extend(pendings)
            leader = not self._writing
            self._writing = True
        if leader:
            self._lead()
        results: list[Result] = []
        for pending in pendings:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.result is not None
            results.append(pending.result)
        return results

    def _lead(self) -> None:
        """Write batches until nothing is queued, then give up the lead."""
        while True:
            with self._lock:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                if not batch:
                    self._writing = False
                    return
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
        """Nothing to stop: writes happen on the callers' own threads."""
