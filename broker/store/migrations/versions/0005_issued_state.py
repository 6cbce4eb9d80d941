"""Issued records are written before the upstream call (state minting), then completed.

Revision ID: 0005_issued_state
Revises: 0004_principals
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_issued_state"
down_revision = "0004_principals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued") as batch:
        batch.add_column(
            sa.Column("state", sa.String(10), nullable=False, server_default="active")
        )
    op.create_index("ix_issued_state", "issued", ["state"])


def downgrade() -> None:
    op.drop_index("ix_issued_state", "issued")
    with op.batch_alter_table("issued") as batch:
        batch.drop_column("state")
