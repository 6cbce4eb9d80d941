"""Alembic environment: migrations run on a connection the broker hands over."""

from __future__ import annotations

from alembic import context

from broker.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the broker always passes its connection
    raise RuntimeError("run migrations through broker.store.migrate.upgrade()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
