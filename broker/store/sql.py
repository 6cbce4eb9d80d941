"""The store on SQLAlchemy Core: SQLite (embedded default) or PostgreSQL (replicas).

Every operation that must hold across replicas is one transaction with a lock:
- SQLite: every transaction is ``BEGIN IMMEDIATE``, so writers are serialized.
- PostgreSQL: ``SELECT ... FOR UPDATE`` on the row decided upon (requests, the audit head)
  and transaction-scoped advisory locks for counters.
Database errors are translated to :class:`StoreUnavailable` here, once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import (
    Connection,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from broker.audit.chain import GENESIS, record_hash
from broker.errors import StoreUnavailable
from broker.store import tables as t
from broker.store.group_commit import GroupCommitter
from broker.store.migrate import upgrade
from broker.store.records import (
    ApprovalRecord,
    AuditRecord,
    DecisionResult,
    FreezeRecord,
    IssuedRecord,
    RequestRecord,
)

T = TypeVar("T")


def make_engine(url: str) -> Engine:
    """An engine with the settings each database needs for concurrent use."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:")
        if not memory and url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class _FileWriterLock:
    """One writer at a time on a SQLite file, across threads and processes, without waits.

    SQLite serializes writers itself, but a waiting writer polls with growing sleeps (its
    busy handler), which under contention between gunicorn workers adds tens of
    milliseconds. Blocking on an advisory lock on a file beside the database wakes the next
    writer as soon as the previous one is done.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.Lock()
        self._handle: IO[bytes] | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._handle is None or self._pid != os.getpid():
                self._handle = self.path.open("ab")  # per process: flock is per open file
                self._pid = os.getpid()
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_: object) -> None:
        try:
            if self._handle is not None:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


def writer_lock(engine: Engine) -> AbstractContextManager[None]:
    """The file lock for a SQLite file database; nothing for PostgreSQL or memory."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return _FileWriterLock(Path(database + ".writer-lock"))
    return nullcontext()


@dataclass(frozen=True)
class AuditSql:
    """The three statements of every audit append, as the driver's own SQL.

    Every request appends to the chain; going straight to the driver for these statements
    skips SQLAlchemy's per-statement machinery, which cost as much as the writes themselves.
    The text is fixed and parameters are always bound, never formatted in.
    """

    select_head: str
    insert_rows: str
    move_head: str

    @classmethod
    def for_dialect(cls, postgres: bool) -> AuditSql:
        columns = [column.name for column in t.audit_log.columns]

        def bind(name: str) -> str:
            return f"%({name})s" if postgres else f":{name}"

        return cls(
            select_head="SELECT seq, hash FROM audit_head WHERE id = 1"
            + (" FOR UPDATE" if postgres else ""),
            insert_rows=f"INSERT INTO audit_log ({', '.join(columns)}) "
            f"VALUES ({', '.join(bind(c) for c in columns)})",
            move_head=f"UPDATE audit_head SET seq = {bind('new_seq')}, hash = {bind('new_hash')} "
            "WHERE id = 1",
        )


_Write = tuple[IssuedRecord | None, AuditRecord | None]
_Written = tuple[IssuedRecord | None, AuditRecord | None]

# Statements of the hot path, built once: SQLAlchemy then reuses their compiled form, which
# costs a fraction of building and caching a new statement object on every request.
_INSERT_ISSUED = insert(t.issued)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SqlStore:
    """Requests, approvals, issued-credential records, freezes, counters and the audit log."""

    def __init__(self, engine: Engine, migrate: bool = True) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._audit_listeners: list[Callable[[AuditRecord], None]] = []
        self._lock = threading.Lock()
        self._committer: GroupCommitter[_Write, _Written] = GroupCommitter(self._write_batch)
        self._writers = writer_lock(engine)
        self._audit_sql = AuditSql.for_dialect(self.is_postgres)
        if migrate:
            self._guard(lambda: upgrade(engine))

    @classmethod
    def from_url(cls, url: str, migrate: bool = True) -> SqlStore:
        return cls(make_engine(url), migrate=migrate)

    # -- plumbing ---------------------------------------------------------------------

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except SQLAlchemyError as e:
            raise StoreUnavailable(f"the broker's store is unavailable ({type(e).__name__})") from e

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._writers, self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as e:
            raise StoreUnavailable(f"the broker's store is unavailable ({type(e).__name__})") from e

    def ping(self) -> None:
        with self._tx() as connection:
            connection.execute(select(1))

    def close(self) -> None:
        self._committer.close()
        self.engine.dispose()

    # -- requests ---------------------------------------------------------------------

    def create_request(self, record: RequestRecord) -> None:
        with self._tx() as connection:
            connection.execute(insert(t.requests).values(**_request_row(record)))

    def get_request(self, request_id: str) -> RequestRecord | None:
        with self._tx() as connection:
            row = (
                connection.execute(select(t.requests).where(t.requests.c.id == request_id))
                .mappings()
                .first()
            )
        return _request(row) if row else None

    def list_requests(
        self,
        agent_key: str | None = None,
        agent_subject: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 100,
    ) -> list[RequestRecord]:
        """Most recent first."""
        query = select(t.requests).order_by(t.requests.c.created_at.desc()).limit(limit)
        if agent_key is not None:
            query = query.where(t.requests.c.agent_key == agent_key)
        if agent_subject is not None:
            query = query.where(t.requests.c.agent_subject == agent_subject)
        if service is not None:
            query = query.where(t.requests.c.service == service)
        if environment is not None:
            query = query.where(t.requests.c.environment == environment)
        if statuses:
            query = query.where(t.requests.c.status.in_(list(statuses)))
        with self._tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [_request(row) for row in rows]

    def transition(
        self, request_id: str, from_statuses: Sequence[str], **changes: Any
    ) -> RequestRecord | None:
        """Change a request only if its status is one of ``from_statuses`` (compare-and-set).

        Returns the updated request, or None when another replica changed it first.
        """
        values = {k: (_json(v) if k in ("notification",) else v) for k, v in changes.items()}
        with self._tx() as connection:
            result = connection.execute(
                update(t.requests)
                .where(
                    and_(
                        t.requests.c.id == request_id, t.requests.c.status.in_(list(from_statuses))
                    )
                )
                .values(**values)
            )
            if result.rowcount != 1:
                return None
            row = (
                connection.execute(select(t.requests).where(t.requests.c.id == request_id))
                .mappings()
                .one()
            )
        return _request(row)

    def set_notification(self, request_id: str, notification: dict[str, Any]) -> None:
        with self._tx() as connection:
            connection.execute(
                update(t.requests)
                .where(t.requests.c.id == request_id)
                .values(notification=_json(notification))
            )

    def record_decision(
        self,
        request_id: str,
        approval: ApprovalRecord,
        decide: Callable[[RequestRecord, int, bool], dict[str, Any]],
    ) -> DecisionResult:
        """Record one approver's decision and let ``decide`` update the request, atomically.

        The request row is locked for the whole transaction, so two approvals arriving at
        once on two replicas are counted one after the other. ``decide(request, approvals,
        counted)`` returns the column changes (status, approved_at...) to apply.
        """
        with self._tx() as connection:
            row = (
                connection.execute(
                    select(t.requests).where(t.requests.c.id == request_id).with_for_update()
                )
                .mappings()
                .first()
            )
            if row is None:
                raise KeyError(request_id)
            request = _request(row)
            counted = True
            try:
                with connection.begin_nested():
                    connection.execute(insert(t.approvals).values(**asdict(approval)))
            except IntegrityError:
                counted = False  # this approver already decided: a double click
            approvals = connection.execute(
                select(func.count())
                .select_from(t.approvals)
                .where(
                    and_(
                        t.approvals.c.request_id == request_id, t.approvals.c.decision == "approve"
                    )
                )
            ).scalar_one()
            changes = decide(request, int(approvals), counted)
            if changes:
                connection.execute(
                    update(t.requests).where(t.requests.c.id == request_id).values(**changes)
                )
                request = replace(request, **changes)
        return DecisionResult(request=request, counted=counted, approvals=int(approvals))

    def approvals_for(self, request_id: str) -> list[ApprovalRecord]:
        with self._tx() as connection:
            rows = (
                connection.execute(
                    select(t.approvals)
                    .where(t.approvals.c.request_id == request_id)
                    .order_by(t.approvals.c.created_at, t.approvals.c.id)
                )
                .mappings()
                .all()
            )
        return [
            ApprovalRecord(
                request_id=r["request_id"],
                approver=r["approver"],
                decision=r["decision"],
                via=r["via"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    # -- single-use tokens ------------------------------------------------------------

    def use_token(self, jti: str, request_id: str, expires_at: float, now: float) -> bool:
        """Mark a link token used; False if it was used before (on any replica)."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(t.used_tokens).values(
                        jti=jti, request_id=request_id, used_at=now, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as e:
            raise StoreUnavailable("the broker's store is unavailable") from e
        return True

    def token_used(self, jti: str) -> bool:
        with self._tx() as connection:
            return (
                connection.execute(
                    select(t.used_tokens.c.jti).where(t.used_tokens.c.jti == jti)
                ).first()
                is not None
            )

    # -- issued credentials -----------------------------------------------------------

    def record_issued(self, record: IssuedRecord, audit: AuditRecord | None = None) -> IssuedRecord:
        """Store an issuance record and, in the same transaction, its audit record."""
        stored, _ = self._committer.submit((record, audit))
        assert stored is not None
        return stored

    def active_issued(
        self,
        now: float,
        agent_subject: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        request_id: str | None = None,
    ) -> list[IssuedRecord]:
        """Issued credentials not yet expired or revoked, filtered."""
        query = select(t.issued).where(
            and_(t.issued.c.expires_at > now, t.issued.c.revoked_at.is_(None))
        )
        if agent_subject is not None:
            query = query.where(t.issued.c.agent_subject == agent_subject)
        if service is not None:
            query = query.where(t.issued.c.service == service)
        if environment is not None:
            query = query.where(t.issued.c.environment == environment)
        if request_id is not None:
            query = query.where(t.issued.c.request_id == request_id)
        with self._tx() as connection:
            rows = connection.execute(query.order_by(t.issued.c.id)).mappings().all()
        return [IssuedRecord(**dict(row)) for row in rows]

    def revoked_request_ids(self, now: float) -> list[str]:
        """Requests with a revoked credential that has not expired yet."""
        query = (
            select(t.issued.c.request_id)
            .distinct()
            .where(and_(t.issued.c.revoked_at.is_not(None), t.issued.c.expires_at > now))
        )
        with self._tx() as connection:
            return [str(row[0]) for row in connection.execute(query)]

    def mark_revoked(self, ids: Sequence[int], now: float) -> None:
        if not ids:
            return
        with self._tx() as connection:
            connection.execute(
                update(t.issued).where(t.issued.c.id.in_(list(ids))).values(revoked_at=now)
            )

    # -- freezes ----------------------------------------------------------------------

    def add_freeze(self, record: FreezeRecord) -> FreezeRecord:
        row = _columns(record)
        with self._tx() as connection:
            result = connection.execute(insert(t.freezes).values(**row))
            key = result.inserted_primary_key
        return replace(record, id=int(key[0]) if key else None)

    def active_freezes(self) -> list[FreezeRecord]:
        with self._tx() as connection:
            rows = (
                connection.execute(
                    select(t.freezes)
                    .where(t.freezes.c.lifted_at.is_(None))
                    .order_by(t.freezes.c.id)
                )
                .mappings()
                .all()
            )
        return [FreezeRecord(**dict(row)) for row in rows]

    def lift_freezes(self, kind: str, target: str, now: float) -> int:
        with self._tx() as connection:
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

    # -- counters (rate limits, circuit breaker) --------------------------------------

    def count_and_add(
        self, key: str, window_seconds: float, limit: int | None, now: float
    ) -> tuple[bool, int, float | None]:
        """Count events of ``key`` in the window and add one unless ``limit`` is reached.

        Returns (added, count before adding, time of the oldest event in the window).
        Atomic across replicas: the key is locked for the transaction.
        """
        since = now - window_seconds
        with self._tx() as connection:
            if self.is_postgres:
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
        with self._tx() as connection:
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

    # -- audit log --------------------------------------------------------------------

    def subscribe_audit(self, listener: Callable[[AuditRecord], None]) -> None:
        """Call ``listener`` with every record appended by this process (for streaming)."""
        self._audit_listeners.append(listener)

    def append_audit(self, record: AuditRecord) -> AuditRecord:
        """Append to the hash chain; concurrent writers on any replica stay in order.

        Concurrent appends of this process share one transaction (group commit); each call
        returns once its record is committed.
        """
        _, stored = self._committer.submit((None, record))
        assert stored is not None
        return stored

    def _write_batch(self, items: list[_Write]) -> list[_Written]:
        """Issuance and audit records of several callers, in order, in one transaction."""
        issued_out: list[IssuedRecord | None] = []
        with self._tx() as connection:
            for issued, _ in items:
                if issued is None:
                    issued_out.append(None)
                    continue
                row = _columns(issued)
                key = connection.execute(_INSERT_ISSUED, row).inserted_primary_key
                issued_out.append(replace(issued, id=int(key[0]) if key else None))
            audits = [audit for _, audit in items if audit is not None]
            chained = iter(self._append_audits(connection, audits))
        written = [
            (stored_issued, next(chained) if audit is not None else None)
            for stored_issued, (_, audit) in zip(issued_out, items, strict=True)
        ]
        for _, stored in written:
            if stored is not None:
                self._notify_audit(stored)
        return written

    def _notify_audit(self, stored: AuditRecord) -> None:
        for listener in self._audit_listeners:
            listener(stored)

    def _append_audit(self, connection: Connection, record: AuditRecord) -> AuditRecord:
        """Chain ``record`` inside the caller's transaction (the head row is locked)."""
        return self._append_audits(connection, [record])[0]

    def _append_audits(
        self, connection: Connection, records: list[AuditRecord]
    ) -> list[AuditRecord]:
        """Chain ``records`` in order inside the caller's transaction: the head is read and
        locked once, the rows are inserted in one statement, the head moves once."""
        sql = self._audit_sql
        head = connection.exec_driver_sql(sql.select_head).mappings().first()
        if head is None:
            # Two replicas may both find no head: the second waits, then inserts nothing.
            dialect_insert = pg_insert if self.is_postgres else sqlite_insert
            connection.execute(
                dialect_insert(t.audit_head)
                .values(id=1, seq=0, hash=GENESIS)
                .on_conflict_do_nothing()
            )
            head = connection.exec_driver_sql(sql.select_head).mappings().one()
        seq = int(head["seq"])
        prev = str(head["hash"])
        rows: list[dict[str, Any]] = []
        chained: list[AuditRecord] = []
        for record in records:
            seq += 1
            digest = record_hash(record, seq, prev)
            rows.append(
                {
                    "seq": seq,
                    "at": record.at,
                    "actor": record.actor,
                    "action": record.action,
                    "outcome": record.outcome,
                    "reason": record.reason,
                    "service": record.service,
                    "environment": record.environment,
                    "tier": record.tier,
                    "request_id": record.request_id,
                    "details": _json(dict(record.details)),
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            chained.append(replace(record, seq=seq, prev_hash=prev, hash=digest))
            prev = digest
        if rows:
            connection.exec_driver_sql(sql.insert_rows, rows)
            connection.exec_driver_sql(sql.move_head, {"new_seq": seq, "new_hash": prev})
        return chained

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
            with self._tx() as connection:
                rows = connection.execute(query).mappings().all()
            for row in rows:
                yield _audit(row)
            if len(rows) < batch:
                return
            after_seq = int(rows[-1]["seq"])

    def audit_head(self) -> int:
        with self._tx() as connection:
            seq = connection.execute(
                select(t.audit_head.c.seq).where(t.audit_head.c.id == 1)
            ).scalar()
        return int(seq or 0)

    def recent_audit(
        self, actor: str | None = None, limit: int = 20, actions: Sequence[str] = ()
    ) -> list[AuditRecord]:
        query = select(t.audit_log).order_by(t.audit_log.c.seq.desc()).limit(limit)
        if actor is not None:
            query = query.where(t.audit_log.c.actor == actor)
        if actions:
            query = query.where(t.audit_log.c.action.in_(list(actions)))
        with self._tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [_audit(row) for row in rows]

    # -- maintenance ------------------------------------------------------------------

    def prune(self, now: float) -> None:
        """Forget used link tokens once they could no longer be replayed anyway."""
        with self._tx() as connection:
            connection.execute(delete(t.used_tokens).where(t.used_tokens.c.expires_at < now))

    def requests_due(self, now: float) -> list[RequestRecord]:
        """Pending requests past their expiry, approved ones past their collect window."""
        query = select(t.requests).where(
            or_(
                and_(t.requests.c.status == "pending", t.requests.c.expires_at <= now),
                and_(t.requests.c.status == "approved", t.requests.c.collect_deadline <= now),
            )
        )
        with self._tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [_request(row) for row in rows]

    # -- observability (metrics at scrape time, `broker audit verify`) ----------------

    def count_requests(self, status: str) -> int:
        """How many requests are in ``status`` now, across every replica."""
        with self._tx() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(t.requests)
                    .where(t.requests.c.status == status)
                ).scalar_one()
            )

    def audit_head_entry(self) -> tuple[int, str] | None:
        """The chain's head (last sequence number and hash), or None when it has none."""
        with self._tx() as connection:
            row = connection.execute(
                select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))


def _columns(record: Any) -> dict[str, Any]:
    """A flat record's fields but its id, as a row (``asdict`` without its deep copies)."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name != "id"}


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _request_row(record: RequestRecord) -> dict[str, Any]:
    row = asdict(record)
    row["agent_claims"] = _json(dict(record.agent_claims))
    row["resources"] = _json(list(record.resources))
    row["notification"] = _json(dict(record.notification))
    return row


def _request(row: Any) -> RequestRecord:
    data = dict(row)
    data["agent_claims"] = json.loads(data["agent_claims"])
    data["resources"] = tuple(json.loads(data["resources"]))
    data["notification"] = json.loads(data["notification"] or "{}")
    data["break_glass"] = bool(data["break_glass"])
    return RequestRecord(**data)


def _audit(row: Any) -> AuditRecord:
    data = dict(row)
    data["details"] = json.loads(data["details"])
    return AuditRecord(**data)
