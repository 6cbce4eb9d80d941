"""Columns added to and dropped from an existing table, for the migrations in versions/.

In a batch: SQLite cannot alter a column in place, so Alembic rebuilds its table. Revisions
already run depend on what these do; change them only by adding, never by editing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


def add_columns(table: str, *columns: sa.Column[Any]) -> None:
    """Add ``columns`` to ``table``, in this order."""
    with op.batch_alter_table(table) as batch:
        for column in columns:
            batch.add_column(column)


def drop_columns(table: str, *names: str) -> None:
    """Drop the columns ``names`` from ``table``, in this order."""
    with op.batch_alter_table(table) as batch:
        for name in names:
            batch.drop_column(name)
