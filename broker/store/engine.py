"""The database underneath every repository: the engine, its transactions, their lock.

Every operation that must hold across replicas is one transaction with a lock:
- SQLite: every transaction is ``BEGIN IMMEDIATE``, so writers are serialized (and, on a
  file, a file lock beside it wakes the next writer without SQLite's polling).
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
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import fields
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import Connection, Select, Table, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from broker.errors import StoreUnavailable

T = TypeVar("T")

# PostgreSQL advisory lock between freezes and completed issuances: a completion holds it
# shared while it records a credential and reads the freezes, a new freeze holds it
# exclusive while it is inserted. So either the completion sees the freeze, or the kill
# switch (which lists records after freezing) sees the credential. SQLite's writers are
# serialized anyway.
FREEZE_LOCK = 0x62726F6B6572  # "broker"


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
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


# A pooled connection idle longer than this is pinged before it is handed out (the server
# may have closed it meanwhile); one used more recently is not: a ping per checkout was two
# extra round trips per issuance, the busiest connections paying for the idlest.
IDLE_PING_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
            dbapi_connection.rollback()  # the ping's own transaction
        except engine.dialect.loaded_dbapi.Error as e:
            # The pool drops this connection and checks out (or opens) another.
            raise DisconnectionError(str(e)) from e


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


class NamedLocks:
    """What :meth:`Database.exclusive` holds on SQLite: one lock per name (two roles'
    revocation policies are written at the same time, one role's one writer at a time);
    a file lock beside a file database, apart from the writers' lock (holding it must not
    stop other writes), else a lock of this process."""

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database
        on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        self._prefix = f"{database}.lock-" if on_file else None
        self._locks: dict[str, AbstractContextManager[None]] = {}
        self._guard = threading.Lock()

    def __call__(self, name: str) -> AbstractContextManager[None]:
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                if self._prefix is None:
                    lock = _ProcessLock()
                else:
                    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
                    lock = _FileWriterLock(Path(self._prefix + digest))
                self._locks[name] = lock
            return lock


class _ProcessLock:
    """A lock of this process, as a context manager of None."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()


def unavailable(error: SQLAlchemyError) -> StoreUnavailable:
    return StoreUnavailable(f"the broker's store is unavailable ({type(error).__name__})")


class Database:
    """An engine and the one way the repositories use it: a locked transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._writers = writer_lock(engine)
        self._named_locks = NamedLocks(engine)

    def guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except SQLAlchemyError as e:
            raise unavailable(e) from e

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        try:
            with self._writers, self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as e:
            raise unavailable(e) from e

    @contextmanager
    def driver_tx(self) -> Iterator[Any]:
        """:meth:`tx` on the driver's own connection, yielding it (DB-API: its ``cursor()``
        runs statements): for the one hot path (the audit chain and issuance records, every
        request), where SQLAlchemy's work per transaction and per statement cost more than
        the database's own. Statements use the driver's parameter style; the lock and the
        error translation are :meth:`tx`'s.

        PostgreSQL: in pipeline mode, statements are sent without waiting for each answer;
        the transaction waits for the server only where a caller fetches a result, and at
        the commit (a write-ahead is one round trip instead of five)."""
        driver_errors = self.engine.dialect.loaded_dbapi.Error
        try:
            with self._writers:
                connection = self.engine.raw_connection()
                try:
                    driver: Any = connection.driver_connection
                    with driver.pipeline() if self.is_postgres else nullcontext():
                        if not self.is_postgres:
                            connection.cursor().execute("BEGIN IMMEDIATE")
                        try:
                            yield connection
                        except BaseException:
                            connection.rollback()
                            raise
                        connection.commit()
                except driver_errors:
                    if getattr(driver, "broken", False):
                        connection.invalidate()  # never back to the pool
                    raise
                finally:
                    connection.close()  # back to the pool
        except driver_errors as e:
            raise StoreUnavailable(f"the broker's store is unavailable ({type(e).__name__})") from e
        except SQLAlchemyError as e:
            raise unavailable(e) from e

    def ping(self) -> None:
        with self.tx() as connection:
            connection.execute(select(1))

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock called ``name`` on every replica, for as long as the block runs
        (while the holder talks to an upstream: no store write should happen inside it).

        PostgreSQL: a transaction-scoped advisory lock, in a transaction of its own. SQLite:
        an advisory lock on a file beside the database (one database, one host); in memory,
        a lock of this process.
        """
        if self.is_postgres:
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            try:
                with self.engine.begin() as connection:
                    connection.execute(select(func.pg_advisory_xact_lock(key)))
                    yield
            except SQLAlchemyError as e:
                raise unavailable(e) from e
            return
        with self._named_locks(name):
            yield


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def columns(record: Any) -> dict[str, Any]:
    """A flat record's fields but its id, as a row (``asdict`` without its deep copies)."""
    return {f.name: getattr(record, f.name) for f in fields(record) if f.name != "id"}


def where_equal(query: Select[Any], table: Table, **values: object) -> Select[Any]:
    """``query`` narrowed to rows whose columns equal the values given (None: any value)."""
    for name, value in values.items():
        if value is not None:
            query = query.where(table.c[name] == value)
    return query
