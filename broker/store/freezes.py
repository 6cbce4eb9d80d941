"""Freezes (kill switch, circuit breaker) in SQL: every replica reads the same ones."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import and_, func, insert, or_, select, update

from broker.store import tables as t
from broker.store.audit_log import Journal
from broker.store.engine import FREEZE_LOCK, Database, columns
from broker.store.records import AuditRecord, FreezeRecord


class SqlFreezes:
    def __init__(self, db: Database, journal: Journal | None = None) -> None:
        self.db = db
        self.journal = journal or Journal(db)  # the chain its audit records are appended to

    def add_freeze(self, record: FreezeRecord, audit: AuditRecord | None = None) -> FreezeRecord:
        """Store a freeze (and its audit record, in the same transaction)."""
        with self.db.tx() as connection:
            if self.db.is_postgres:  # after every completion recording now (engine.FREEZE_LOCK)
                connection.execute(select(func.pg_advisory_xact_lock(FREEZE_LOCK)))
            key = connection.execute(insert(t.freezes).values(**columns(record)))
            primary = key.inserted_primary_key
            chained = self.journal.chain_in(connection, [audit] if audit else [])
        self.journal.announce(chained)
        return replace(record, id=int(primary[0]) if primary else None)

    def active_freezes(self, now: float | None = None) -> list[FreezeRecord]:
        """Freezes in force: not lifted, or (given ``now``) lifted only from a later time."""
        lifted = t.freezes.c.lifted_at
        still = lifted.is_(None) if now is None else or_(lifted.is_(None), lifted > now)
        query = select(t.freezes).where(still).order_by(t.freezes.c.id)
        with self.db.tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [FreezeRecord(**dict(row)) for row in rows]

    def lift_freezes(
        self, kind: str, target: str, now: float, audit: AuditRecord | None = None
    ) -> int:
        """Lift the target's freezes from ``now`` (which may be a later time: a lift that
        takes effect then), with ``audit`` in the same transaction."""
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
            chained = self.journal.chain_in(connection, [audit] if audit else [])
        self.journal.announce(chained)
        return int(result.rowcount)
