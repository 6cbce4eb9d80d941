"""Requests carry their intent (canonical JSON and SHA-256) and its measured impact.

Revision ID: 0002_request_intent
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa

from broker.store.migrations.columns import add_columns, drop_columns

revision = "0002_request_intent"
down_revision = "0001"


def upgrade() -> None:
    add_columns(
        "requests",
        sa.Column("intent", sa.Text),
        sa.Column("intent_sha256", sa.String(64)),
        sa.Column("impact", sa.Text, nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    drop_columns("requests", "impact", "intent_sha256", "intent")
