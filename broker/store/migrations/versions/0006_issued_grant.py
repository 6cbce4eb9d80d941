"""Issued records name the SHA-256 of the grant issued (revocations audit it).

Revision ID: 0006_issued_grant
Revises: 0005_issued_state
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_issued_grant"
down_revision = "0005_issued_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued") as batch:
        batch.add_column(sa.Column("grant_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issued") as batch:
        batch.drop_column("grant_sha256")
