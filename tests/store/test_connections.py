"""PostgreSQL connections the server closed: replaced, never handed out again.

A pooled connection is pinged only when it was idle a while (``IDLE_PING_SECONDS``), not on
every checkout; one found dead in the middle of a write is dropped from the pool, and the
write is done once, on another connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest

from broker.store import engine
from broker.store.records import AuditRecord
from broker.store.sql import SqlStore
from tests.fixtures.postgres import ADMIN_URL


@pytest.fixture()
def store(postgres_url: str) -> Iterator[SqlStore]:
    made = SqlStore.from_url(postgres_url)
    yield made
    made.close()


def record(n: int) -> AuditRecord:
    return AuditRecord(
        at=time.time(), actor="tester", action="test", outcome="ok", details={"n": n}
    )


def close_every_connection(store: SqlStore) -> int:
    """What a server restart or an idle timeout does: the server ends the store's sessions."""
    database = store.db.engine.url.database
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(ended)


def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_audit(record(1))
    assert close_every_connection(store) >= 1
    monkeypatch.setattr(engine, "IDLE_PING_SECONDS", 0.0)  # every pooled connection is idle

    with closing(store.db.engine.raw_connection()) as connection:
        cursor = connection.cursor()
        cursor.execute("SELECT 1")  # on the dead connection, this would raise
        assert cursor.fetchone() == (1,)
        connection.rollback()


def test_a_connection_found_dead_in_a_write_is_dropped_and_the_write_done_once_on_another(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append_audit(record(1))
    assert close_every_connection(store) >= 1
    monkeypatch.setattr(engine, "IDLE_PING_SECONDS", 3600.0)  # used just now: not pinged

    stored = store.append_audit(record(2))  # the group commit retries it alone
    again = store.append_audit(record(3))

    assert (stored.seq, again.seq) == (2, 3)
    assert [r.details["n"] for r in store.audit_records()] == [1, 2, 3]
