"""Apply the store's Alembic migrations (on start-up, and by `broker store upgrade`).

Every process that opens the store checks its schema, and nearly always finds it current.
Importing Alembic costs more than the rest of a `broker revoke` during an incident (it
pulls in Mako and Pygments: about half a second of a quiet core), so the check reads the
database's revision and compares it with the newest migration file's before importing it.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^revision(?:\s*:\s*str)?\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]+)?\s*=\s*(?:[\"']([^\"']+)[\"']|None)", re.MULTILINE)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest migration's revision, read from the files; None unless the chain has
    exactly one head written the usual way (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text()
        revision, down = _REVISION.search(source), _DOWN.search(source)
        if revision is None:
            continue
        if down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The revision the database says it is at (None: not migrated yet, or unreadable)."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; concurrent callers on PostgreSQL serialize."""
    if revision == "head" and (head := head_revision()) and current_revision(engine) == head:
        return
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several replicas start at once: only one may migrate at a time.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7351001)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
