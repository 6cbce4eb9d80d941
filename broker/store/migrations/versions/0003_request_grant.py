"""Requests carry the grant approvers approve: its canonical JSON and SHA-256.

Revision ID: 0003_request_grant
Revises: 0002_request_intent
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_request_grant"
down_revision = "0002_request_intent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("grant", sa.Text))
        batch.add_column(sa.Column("grant_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("grant_sha256")
        batch.drop_column("grant")
