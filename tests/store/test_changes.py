"""A long poll wakes on its request's change, not on a timer: within one process
(SQLite) and across replicas (PostgreSQL LISTEN/NOTIFY between two stores)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.store.changes import FALLBACK_SECONDS, LocalChanges, PostgresChanges
from broker.store.records import ApprovalRecord, RequestRecord
from broker.store.sql import SqlStore
from tests.store.test_store import request_record

REQUEST = "req_" + "a" * 26


def approve(store: SqlStore, approver: str) -> None:
    def one_is_enough(
        request: RequestRecord, approvers: tuple[str, ...], counted: bool
    ) -> dict[str, object]:
        return {"status": "approved", "approved_at": 10.0}

    store.record_decision(
        REQUEST, ApprovalRecord(REQUEST, approver, "approve", "page", 5.0), one_is_enough
    )


def waits(store: SqlStore, mark: int, timeout: float) -> tuple[threading.Thread, list[object]]:
    """``store.wait_for_change`` in a thread; its result (and when) land in the list."""
    out: list[object] = []

    def run() -> None:
        woke = store.wait_for_change(REQUEST, mark, timeout)
        out.extend([woke, time.monotonic()])

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_marks_see_changes_made_between_the_read_and_the_wait() -> None:
    changes = LocalChanges()
    mark = changes.mark(REQUEST)
    changes.changed(REQUEST)  # after the waiter read the request, before it waits
    started = time.monotonic()
    assert changes.wait(REQUEST, mark, 10) is True
    assert time.monotonic() - started < 1
    assert changes.wait(REQUEST, changes.mark(REQUEST), 0.05) is False
    assert changes.wait("req_" + "b" * 26, 0, 0.05) is False  # another request's change


@pytest.fixture()
def sqlite(tmp_path: Path) -> Iterator[SqlStore]:
    made = SqlStore.from_url(f"sqlite:///{tmp_path / 'broker.db'}")
    made.create_request(request_record())
    yield made
    made.close()


def test_a_decision_wakes_the_waiter_in_the_same_process(sqlite: SqlStore) -> None:
    mark = sqlite.change_mark(REQUEST)
    thread, out = waits(sqlite, mark, 30)
    time.sleep(0.2)
    assert out == []  # asleep: nothing changed yet
    decided = time.monotonic()
    approve(sqlite, "alice")
    thread.join(10)
    woke, at = out
    # Woken by the decision, before the fallback re-read would have come round.
    assert woke is True and at - decided < FALLBACK_SECONDS / 2  # type: ignore[operator]


def test_a_decision_on_one_replica_wakes_the_waiter_on_another(postgres_url: str) -> None:
    first, second = SqlStore.from_url(postgres_url), SqlStore.from_url(postgres_url)
    try:
        first.create_request(request_record())
        assert isinstance(first.changes, PostgresChanges)
        assert first.changes.listening(10)  # connected on first use, in this process
        mark = first.change_mark(REQUEST)
        thread, out = waits(first, mark, 30)
        time.sleep(0.3)
        decided = time.monotonic()
        approve(second, "alice")  # another process's store: only NOTIFY can tell the first
        thread.join(10)
        woke, at = out
        assert woke is True and at - decided < FALLBACK_SECONDS / 2  # type: ignore[operator]
        mark = first.change_mark(REQUEST)
        second.transition(REQUEST, ["approved"], status="collected")
        assert first.wait_for_change(REQUEST, mark, 5) is True
    finally:
        first.close()
        second.close()
