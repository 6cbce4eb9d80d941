"""Freezes (kill switch, circuit breaker) in SQL: every replica reads the same ones."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import and_, insert, or_, select, update

from broker.store import tables as t
from broker.store.engine import Database, columns
from broker.store.records import FreezeRecord


class SqlFreezes:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_freeze(self, record: FreezeRecord) -> FreezeRecord:
        with self.db.tx() as connection:
            key = connection.execute(insert(t.freezes).values(**columns(record)))
            primary = key.inserted_primary_key
        return replace(record, id=int(primary[0]) if primary else None)

    def active_freezes(self, now: float | None = None) -> list[FreezeRecord]:
        """Freezes in force: not lifted, or (given ``now``) lifted only from a later time."""
        lifted = t.freezes.c.lifted_at
        still = lifted.is_(None) if now is None else or_(lifted.is_(None), lifted > now)
        query = select(t.freezes).where(still).order_by(t.freezes.c.id)
        with self.db.tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [FreezeRecord(**dict(row)) for row in rows]

    def lift_freezes(self, kind: str, target: str, now: float) -> int:
        """Lift the target's freezes from ``now`` (which may be a later time: a lift that
        takes effect then)."""
        with self.db.tx() as connection:
            result = connection.execute(
                update(t.freezes)
                .where(
                    and_(
                        t.freezes.c.kind == kind,
                        t.freezes.c.target == target,
                        t.freezes.c.lifted_at.is_(None),
                    )
                )
                .values(lifted_at=now)
            )
        return int(result.rowcount)
