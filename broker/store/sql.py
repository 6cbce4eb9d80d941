"""The store on SQLAlchemy Core: SQLite (embedded default) or PostgreSQL (replicas).

:class:`SqlStore` is every repository over one database, built once by the wiring
(:mod:`broker.services`); services see only the protocols of :mod:`broker.store.base` they
need. How each operation holds across replicas is said in :mod:`broker.store.engine`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy.engine import Engine

from broker.store.audit_log import Journal, SqlAuditLog
from broker.store.changes import LocalChanges, PostgresChanges
from broker.store.counters import SqlCounters
from broker.store.engine import Database, make_engine
from broker.store.freezes import SqlFreezes
from broker.store.issued import SqlIssued
from broker.store.migrate import upgrade
from broker.store.requests import SqlApprovals, SqlRequests
from broker.store.tokens import SqlTokens


class SqlStore(
    SqlRequests, SqlApprovals, SqlIssued, SqlFreezes, SqlCounters, SqlTokens, SqlAuditLog
):
    """Requests, approvals, issued-credential records, freezes, counters, single-use marks
    and the audit log, on one database."""

    def __init__(self, engine: Engine, migrate: bool = True) -> None:
        self.engine = engine
        self.db = Database(engine)
        self.is_postgres = self.db.is_postgres
        self.journal = Journal(self.db)
        self.changes: LocalChanges = (
            PostgresChanges(engine.url.set(drivername="postgresql").render_as_string(False))
            if self.is_postgres
            else LocalChanges()
        )
        if migrate:
            self.db.guard(lambda: upgrade(engine))

    @classmethod
    def from_url(cls, url: str, migrate: bool = True) -> SqlStore:
        return cls(make_engine(url), migrate=migrate)

    def ping(self) -> None:
        self.db.ping()

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """A lock held on every replica for the block's duration (see Database.exclusive)."""
        return self.db.exclusive(name)

    def close(self) -> None:
        self.changes.close()
        self.journal.close()
        self.engine.dispose()
