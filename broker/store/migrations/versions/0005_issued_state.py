"""Issued records are written before the upstream call (state minting), then completed.

Revision ID: 0005_issued_state
Revises: 0004_principals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from broker.store.migrations.columns import add_columns, drop_columns

revision = "0005_issued_state"
down_revision = "0004_principals"


def upgrade() -> None:
    add_columns(
        "issued", sa.Column("state", sa.String(10), nullable=False, server_default="active")
    )
    op.create_index("ix_issued_state", "issued", ["state"])


def downgrade() -> None:
    op.drop_index("ix_issued_state", "issued")
    drop_columns("issued", "state")
