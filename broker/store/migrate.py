"""Apply the store's Alembic migrations (on start-up, and by `broker store upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; concurrent callers on PostgreSQL serialize."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several replicas start at once: only one may migrate at a time.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7351001)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
