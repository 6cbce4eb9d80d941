"""Records of issued credentials in SQL: correlation ids for revocation, never a secret."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from sqlalchemy import ColumnElement, Select, and_, select, update

from broker.store import tables as t
from broker.store.audit_log import Journal
from broker.store.engine import Database, where_equal
from broker.store.records import AuditRecord, Completion, IssuedRecord, Reach


class SqlIssued:
    def __init__(self, db: Database, journal: Journal) -> None:
        self.db = db
        self.journal = journal

    def record_issued(self, record: IssuedRecord, audit: AuditRecord | None = None) -> IssuedRecord:
        """Store an issuance record and, in the same transaction, its audit record."""
        stored = self.journal.write(record, audit).issued
        assert stored is not None
        return stored

    def begin_issue(self, record: IssuedRecord) -> IssuedRecord:
        """Write ``record`` (state ``minting``) before the upstream call; return it with its
        id. Group-committed with other replicas' and workers' write-aheads."""
        return self.journal.begin(record)

    def complete_issue(self, record: IssuedRecord, audit: AuditRecord) -> Completion:
        """Complete the write-ahead ``record`` (its id set) with the credential's ids, and its
        audit record, in one transaction that also reads the freezes in force."""
        written = self.journal.write(record, audit)
        assert written.issued is not None
        return Completion(written.issued, written.freezes)

    def stale_intents(self, before: float) -> list[IssuedRecord]:
        """Write-aheads never completed, begun before ``before``: a replica died or failed
        between its upstream call and the record (the reconciler's work)."""
        query = select(t.issued).where(
            and_(t.issued.c.state == "minting", t.issued.c.issued_at < before)
        )
        return self._records(query)

    def stop_in_flight(self, ids: Sequence[int], now: float) -> list[int]:
        """Mark write-aheads still ``minting`` revoked (their completion will see it and
        revoke what it minted); return those it marked (the others completed first)."""
        return self._mark(ids, t.issued.c.state == "minting", revoked_at=now)

    def issued_by_ids(self, ids: Sequence[int]) -> list[IssuedRecord]:
        if not ids:
            return []
        query = select(t.issued).where(t.issued.c.id.in_(list(ids)))
        return self._records(query)

    def mark_orphaned(self, ids: Sequence[int], now: float) -> None:
        """Write-aheads whose upstream credential the reconciler revoked."""
        self._mark(ids, t.issued.c.state == "minting", state="orphan", revoked_at=now)

    def active_issued(self, now: float, **reach: Unpack[Reach]) -> list[IssuedRecord]:
        """Issued credentials not yet expired or revoked, of those ``reach`` names."""
        query = where_equal(
            select(t.issued).where(
                and_(t.issued.c.expires_at > now, t.issued.c.revoked_at.is_(None))
            ),
            t.issued,
            **reach,
        )
        return self._records(query)

    def revoked_request_ids(self, now: float) -> list[str]:
        """Requests with a revoked credential that has not expired yet."""
        query = (
            select(t.issued.c.request_id)
            .distinct()
            .where(and_(t.issued.c.revoked_at.is_not(None), t.issued.c.expires_at > now))
        )
        with self.db.tx() as connection:
            return [str(row[0]) for row in connection.execute(query)]

    def issued_for_request(self, request_id: str) -> list[IssuedRecord]:
        """Every credential issued under ``request_id`` (indexed), revoked and expired too."""
        query = select(t.issued).where(t.issued.c.request_id == request_id)
        return self._records(query)

    def mark_revoked(self, ids: Sequence[int], now: float) -> None:
        self._mark(ids, revoked_at=now)

    def _records(self, query: Select[Any]) -> list[IssuedRecord]:
        with self.db.tx() as connection:
            rows = connection.execute(query.order_by(t.issued.c.id)).mappings().all()
        return [IssuedRecord(**dict(row)) for row in rows]

    def _mark(
        self, ids: Sequence[int], *conditions: ColumnElement[bool], **values: object
    ) -> list[int]:
        """Set ``values`` on the records ``ids`` that meet ``conditions``; return those set."""
        if not ids:
            return []
        with self.db.tx() as connection:
            rows = connection.execute(
                update(t.issued)
                .where(and_(t.issued.c.id.in_(list(ids)), *conditions))
                .values(**values)
                .returning(t.issued.c.id)
            ).all()
        return [int(row[0]) for row in rows]
