"""Sliding-window event counters in SQL (rate limits, the circuit breaker, claims).

A key's events are counted and added in one transaction with the key locked (an advisory
lock on PostgreSQL, the writer lock on SQLite), so replicas never both take the last slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from sqlalchemy import and_, delete, func, insert, select

from broker.store import tables as t
from broker.store.engine import Database


class SqlCounters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def count_and_add(
        self, key: str, window_seconds: float, limit: int | None, now: float
    ) -> tuple[bool, int, float | None]:
        """Count events of ``key`` in the window and add one unless ``limit`` is reached.

        Returns (added, count before adding, time of the oldest event in the window).
        Atomic across replicas: the key is locked for the transaction.
        """
        since = now - window_seconds
        with self.db.tx() as connection:
            if self.db.is_postgres:
                connection.execute(select(func.pg_advisory_xact_lock(_lock_id(key))))
            events = connection.execute(
                select(func.count(), func.min(t.counter_events.c.at)).where(
                    and_(t.counter_events.c.key == key, t.counter_events.c.at > since)
                )
            ).one()
            count, oldest = int(events[0]), events[1]
            if limit is not None and count >= limit:
                return False, count, oldest
            connection.execute(insert(t.counter_events).values(key=key, at=now))
            # Old events are useless; prune them as we go.
            connection.execute(
                delete(t.counter_events).where(
                    and_(t.counter_events.c.key == key, t.counter_events.c.at <= since)
                )
            )
        return True, count, oldest if oldest is not None else now

    def count(self, key: str, window_seconds: float, now: float) -> int:
        with self.db.tx() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(t.counter_events)
                    .where(
                        and_(
                            t.counter_events.c.key == key,
                            t.counter_events.c.at > now - window_seconds,
                        )
                    )
                ).scalar_one()
            )

    def forget(self, keys: Collection[str]) -> None:
        """Drop every event of ``keys``."""
        with self.db.tx() as connection:
            connection.execute(delete(t.counter_events).where(t.counter_events.c.key.in_(keys)))


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
