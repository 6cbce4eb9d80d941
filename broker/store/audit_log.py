"""The hash-chained audit log in SQL, and the journal that appends to it.

The :class:`Journal` is the one writer of the chain. Concurrent appends of a process share
one transaction (group commit, :mod:`broker.store.group_commit`); an issuance record rides
in the same transaction as its audit record, so neither is stored without the other. A
transaction of another repository that changes state appends its audit records itself,
through :meth:`Journal.chain_in` (one transaction for the change and its record).

The write-ahead of an issuance (its record in state ``minting``, before the upstream call)
is group-committed too, apart (:meth:`Journal.begin`); its completion (the credential's
ids, state ``active``) reads, in the same transaction, whether the kill switch revoked the
record meanwhile and which freezes are in force, with PostgreSQL's shared freeze lock held
(:data:`broker.store.engine.FREEZE_LOCK`): a freeze committed before it is seen, one
committed after it sees the record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, select

from broker.audit.chain import GENESIS, record_hash
from broker.store import tables as t
from broker.store.engine import FREEZE_LOCK, Database, as_json, columns
from broker.store.group_commit import GroupCommitter
from broker.store.records import AuditRecord, FreezeRecord, IssuedRecord

_Write = tuple[IssuedRecord | None, AuditRecord | None]
# What a completion writes over its write-ahead (the rest was written ahead).
COMPLETED_COLUMNS = (
    "expires_at",
    "access_key_id",
    "source_identity",
    "role_arn",
    "vault_accessor",
    "lease_id",
    "username",
    "state",
    "vault_policy",
)
FREEZE_COLUMNS = tuple(column.name for column in t.freezes.columns)


@dataclass(frozen=True)
class Written:
    """What one item of a batch stored; for a completion, also the freezes in force when it
    committed (the issued record as stored says whether it was revoked meanwhile)."""

    issued: IssuedRecord | None
    audit: AuditRecord | None
    freezes: tuple[FreezeRecord, ...] = ()


@dataclass(frozen=True)
class AuditSql:
    """The statements of every audit append and issuance record, as the driver's own SQL,
    run on the driver's own connection (:meth:`Database.driver_tx`).

    Every request appends to the chain; going straight to the driver skips SQLAlchemy's
    per-transaction and per-statement machinery, which cost more than the writes themselves
    (on SQLite, 170 of 250 microseconds per issuance).
    The text is fixed and parameters are always bound, never formatted in.
    """

    select_head: str
    insert_rows: str
    move_head: str
    create_head: str  # once, by whichever replica writes first
    issued_columns: tuple[str, ...]
    insert_issued: str  # returning the new row's id
    complete_issued: str  # a write-ahead completed, returning its revoked_at
    freezes_since: str  # in force, or lifted only after a time
    share_freeze_lock: str | None  # PostgreSQL: engine.FREEZE_LOCK, shared
    durable_enough: str | None  # PostgreSQL: the write-ahead's commit need not wait for disk

    @classmethod
    def for_dialect(cls, postgres: bool) -> AuditSql:
        names = [column.name for column in t.audit_log.columns]
        issued = [column.name for column in t.issued.columns if column.name != "id"]

        def bind(name: str) -> str:
            return f"%({name})s" if postgres else f":{name}"

        return cls(
            select_head="SELECT seq, hash FROM audit_head WHERE id = 1"
            + (" FOR UPDATE" if postgres else ""),
            insert_rows=f"INSERT INTO audit_log ({', '.join(names)}) "
            f"VALUES ({', '.join(bind(c) for c in names)})",
            move_head=f"UPDATE audit_head SET seq = {bind('new_seq')}, hash = {bind('new_hash')} "
            "WHERE id = 1",
            create_head="INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, "
            f"{bind('genesis')}) ON CONFLICT DO NOTHING",
            issued_columns=tuple(issued),
            insert_issued=f"INSERT INTO issued ({', '.join(issued)}) "
            f"VALUES ({', '.join(bind(c) for c in issued)}) RETURNING id",
            complete_issued="UPDATE issued SET "
            + ", ".join(f"{c} = {bind(c)}" for c in COMPLETED_COLUMNS)
            + f" WHERE id = {bind('id')} RETURNING revoked_at",
            freezes_since=f"SELECT {', '.join(FREEZE_COLUMNS)} FROM freezes "
            f"WHERE lifted_at IS NULL OR lifted_at > {bind('since')} ORDER BY id",
            share_freeze_lock=f"SELECT pg_advisory_xact_lock_shared({FREEZE_LOCK})"
            if postgres
            else None,
            # What the write-ahead guards against is the broker dying, not the database
            # (whose own crash loses the call's answer too).
            durable_enough="SET LOCAL synchronous_commit TO OFF" if postgres else None,
        )


class Journal:
    """Issuance and audit records of several callers, in order, group-committed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sql = AuditSql.for_dialect(db.is_postgres)
        self._listeners: list[Callable[[AuditRecord], None]] = []
        self._committer: GroupCommitter[_Write, Written] = GroupCommitter(self._write_batch)
        self._intents: GroupCommitter[IssuedRecord, IssuedRecord] = GroupCommitter(
            self._begin_batch
        )

    def subscribe(self, listener: Callable[[AuditRecord], None]) -> None:
        self._listeners.append(listener)

    def write(self, issued: IssuedRecord | None, audit: AuditRecord | None) -> Written:
        """Store both (either may be None) in one transaction; return them as stored. An
        issued record with an id completes its write-ahead instead of adding one."""
        return self._committer.submit((issued, audit))

    def write_all(self, items: list[_Write]) -> list[Written]:
        """:meth:`write` for many, in order, sharing transactions."""
        return self._committer.submit_all(items)

    def begin(self, issued: IssuedRecord) -> IssuedRecord:
        """The write-ahead of an issuance, committed (with its id) before the upstream call."""
        return self._intents.submit(issued)

    def chain_in(self, connection: Connection, records: list[AuditRecord]) -> list[AuditRecord]:
        """Append ``records`` inside the caller's (SQLAlchemy) transaction; listeners hear of
        them once it committed (:meth:`announce`)."""
        if not records:
            return []
        cursor = connection.connection.cursor()  # the driver's, in the same transaction
        try:
            return self._chain(cursor, records)
        finally:
            cursor.close()

    def insert_in(self, connection: Connection, issued: IssuedRecord) -> IssuedRecord:
        """Insert an issuance record inside the caller's transaction; return it with its id."""
        cursor = connection.connection.cursor()
        try:
            return self._insert(cursor, issued)
        finally:
            cursor.close()

    def announce(self, records: list[AuditRecord]) -> None:
        for record in records:
            for listener in self._listeners:
                listener(record)

    def close(self) -> None:
        self._committer.close()
        self._intents.close()

    def _insert(self, cursor: Any, issued: IssuedRecord) -> IssuedRecord:
        return self._inserted(self._send_insert(cursor, issued), issued)

    def _send_insert(self, cursor: Any, issued: IssuedRecord) -> Any:
        sql = self._sql
        values = columns(issued)
        cursor.execute(sql.insert_issued, {c: values.get(c) for c in sql.issued_columns})
        return cursor

    @staticmethod
    def _inserted(cursor: Any, issued: IssuedRecord) -> IssuedRecord:
        return replace(issued, id=int(cursor.fetchone()[0]))

    def _begin_batch(self, items: list[IssuedRecord]) -> list[IssuedRecord]:
        # Every statement is sent before any answer is read: on PostgreSQL (pipeline mode,
        # Database.driver_tx) the batch and its commit are one round trip.
        with self.db.driver_tx() as connection:
            if self._sql.durable_enough:
                connection.cursor().execute(self._sql.durable_enough)
            sent = [self._send_insert(connection.cursor(), item) for item in items]
            if self.db.is_postgres:
                connection.commit()  # answers are read after it (SQLite drops them at commit)
            return [self._inserted(cursor, item) for cursor, item in zip(sent, items, strict=True)]

    def _write_batch(self, items: list[_Write]) -> list[Written]:
        sql = self._sql
        completing = [i for i, _ in items if i is not None and i.id is not None]
        audits = [audit for _, audit in items if audit is not None]
        with self.db.driver_tx() as connection:
            # Sent first, read after: one wait for the server on PostgreSQL, not one each.
            if completing and sql.share_freeze_lock:
                connection.cursor().execute(sql.share_freeze_lock)
            sent: list[Any] = []
            for issued, _ in items:
                if issued is None:
                    sent.append(None)
                elif issued.id is not None:
                    sent.append(self._send_complete(connection.cursor(), issued))
                else:
                    sent.append(self._send_insert(connection.cursor(), issued))
            freezes_cursor = None
            if completing:
                # Lifted only after the earliest mint of the batch still counts (fail closed).
                since = min(i.issued_at for i in completing)
                freezes_cursor = connection.cursor()
                freezes_cursor.execute(sql.freezes_since, {"since": since})
            head_cursor = self._send_head(connection.cursor()) if audits else None
            issued_out = [
                self._read_back(connection, cursor, issued)
                for cursor, (issued, _) in zip(sent, items, strict=True)
            ]
            freezes: tuple[FreezeRecord, ...] = ()
            if freezes_cursor is not None:
                freezes = tuple(
                    FreezeRecord(**dict(zip(FREEZE_COLUMNS, row, strict=True)))
                    for row in freezes_cursor.fetchall()
                )
            chained: list[AuditRecord] = []
            if head_cursor is not None:
                cursor = connection.cursor()
                chained = self._append(cursor, self._head(cursor, head_cursor), audits)
        in_order = iter(chained)
        written = [
            Written(
                stored_issued,
                next(in_order) if audit is not None else None,
                freezes if issued is not None and issued.id is not None else (),
            )
            for stored_issued, (issued, audit) in zip(issued_out, items, strict=True)
        ]
        self.announce([w.audit for w in written if w.audit is not None])
        return written

    def _read_back(
        self, connection: Any, cursor: Any, issued: IssuedRecord | None
    ) -> IssuedRecord | None:
        """The answer to what :meth:`_write_batch` sent for ``issued``: a completion's or an
        insert's (None: the item carried only an audit record)."""
        if issued is None:
            return None
        if issued.id is not None:
            return self._completed(connection.cursor(), cursor, issued)
        return self._inserted(cursor, issued)

    def _send_complete(self, cursor: Any, issued: IssuedRecord) -> Any:
        """Complete a write-ahead with the credential's ids and expiry (read by
        :meth:`_completed`)."""
        values = {name: getattr(issued, name) for name in COMPLETED_COLUMNS}
        values["id"] = issued.id
        cursor.execute(self._sql.complete_issued, values)
        return cursor

    def _completed(self, spare: Any, cursor: Any, issued: IssuedRecord) -> IssuedRecord:
        """The completed record as stored (``revoked_at`` set when the kill switch reached
        it first)."""
        row = cursor.fetchone()
        if row is None:
            # The write-ahead is gone (the database lost a commit it had not yet flushed:
            # see durable_enough): the credential is recorded anew, never handed out unlisted.
            return self._insert(spare, replace(issued, id=None))
        return replace(issued, revoked_at=row[0])

    def _chain(self, cursor: Any, records: list[AuditRecord]) -> list[AuditRecord]:
        """Chain ``records`` in order inside the caller's transaction: the head is read and
        locked once, the rows are inserted in one statement, the head moves once."""
        return self._append(cursor, self._head(cursor, self._send_head(cursor)), records)

    def _send_head(self, cursor: Any) -> Any:
        cursor.execute(self._sql.select_head)
        return cursor

    def _head(self, cursor: Any, sent: Any) -> tuple[int, str]:
        """The chain's head, read (and locked) by :meth:`_send_head`'s statement."""
        head = sent.fetchone()
        if head is None:
            # Two replicas may both find no head: the second waits, then inserts nothing.
            cursor.execute(self._sql.create_head, {"genesis": GENESIS})
            cursor.execute(self._sql.select_head)
            head = cursor.fetchone()
        return int(head[0]), str(head[1])

    def _append(
        self, cursor: Any, head: tuple[int, str], records: list[AuditRecord]
    ) -> list[AuditRecord]:
        """Insert ``records`` after ``head`` (in one statement) and move the head once."""
        sql = self._sql
        seq, prev = head
        rows: list[dict[str, Any]] = []
        chained: list[AuditRecord] = []
        for record in records:
            seq += 1
            digest = record_hash(record, seq, prev)
            row = columns(record)
            row.update(seq=seq, prev_hash=prev, hash=digest, details=as_json(dict(record.details)))
            rows.append(row)
            chained.append(replace(record, seq=seq, prev_hash=prev, hash=digest))
            prev = digest
        if rows:
            cursor.executemany(sql.insert_rows, rows)
            cursor.execute(sql.move_head, {"new_seq": seq, "new_hash": prev})
        return chained


class SqlAuditLog:
    """Append to the chain (through the journal) and read it back in order."""

    def __init__(self, db: Database, journal: Journal) -> None:
        self.db = db
        self.journal = journal

    def subscribe_audit(self, listener: Callable[[AuditRecord], None]) -> None:
        """Call ``listener`` with every record appended by this process (for streaming)."""
        self.journal.subscribe(listener)

    def append_audit(self, record: AuditRecord) -> AuditRecord:
        """Append to the hash chain; concurrent writers on any replica stay in order.

        Concurrent appends of this process share one transaction (group commit); each call
        returns once its record is committed.
        """
        stored = self.journal.write(None, record).audit
        assert stored is not None
        return stored

    def append_audits(self, records: Sequence[AuditRecord]) -> list[AuditRecord]:
        """Append ``records`` in order, as few transactions as the group commit needs (one
        per 256), instead of one each; return them as stored."""
        written = self.journal.write_all([(None, record) for record in records])
        return [w.audit for w in written if w.audit is not None]

    def audit_records(
        self,
        since: float | None = None,
        request_id: str | None = None,
        after_seq: int = 0,
        batch: int = 1000,
    ) -> Iterator[AuditRecord]:
        """Records in chain order, fetched in batches (a long log does not fill memory)."""
        while True:
            query = (
                select(t.audit_log)
                .where(t.audit_log.c.seq > after_seq)
                .order_by(t.audit_log.c.seq)
                .limit(batch)
            )
            if since is not None:
                query = query.where(t.audit_log.c.at >= since)
            if request_id is not None:
                query = query.where(t.audit_log.c.request_id == request_id)
            with self.db.tx() as connection:
                rows = connection.execute(query).mappings().all()
            for row in rows:
                yield _audit(row)
            if len(rows) < batch:
                return
            after_seq = int(rows[-1]["seq"])

    def recent_audit(
        self, actor: str | None = None, limit: int = 20, actions: Sequence[str] = ()
    ) -> list[AuditRecord]:
        query = select(t.audit_log).order_by(t.audit_log.c.seq.desc()).limit(limit)
        if actor is not None:
            query = query.where(t.audit_log.c.actor == actor)
        if actions:
            query = query.where(t.audit_log.c.action.in_(list(actions)))
        with self.db.tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [_audit(row) for row in rows]

    def audit_head(self) -> int:
        entry = self.audit_head_entry()
        return 0 if entry is None else entry[0]

    def audit_head_entry(self) -> tuple[int, str] | None:
        """The chain's head (last sequence number and hash), or None when it has none."""
        with self.db.tx() as connection:
            row = connection.execute(
                select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))


def _audit(row: Any) -> AuditRecord:
    data = dict(row)
    data["details"] = json.loads(data["details"])
    return AuditRecord(**data)
