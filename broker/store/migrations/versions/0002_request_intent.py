"""Requests carry their intent (canonical JSON and SHA-256) and its measured impact.

Revision ID: 0002_request_intent
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_request_intent"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("intent", sa.Text))
        batch.add_column(sa.Column("intent_sha256", sa.String(64)))
        batch.add_column(sa.Column("impact", sa.Text, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("impact")
        batch.drop_column("intent_sha256")
        batch.drop_column("intent")
