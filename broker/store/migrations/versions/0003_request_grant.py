"""Requests carry the grant approvers approve: its canonical JSON and SHA-256.

Revision ID: 0003_request_grant
Revises: 0002_request_intent
"""

from __future__ import annotations

import sqlalchemy as sa

from broker.store.migrations.columns import add_columns, drop_columns

revision = "0003_request_grant"
down_revision = "0002_request_intent"


def upgrade() -> None:
    add_columns("requests", sa.Column("grant", sa.Text), sa.Column("grant_sha256", sa.String(64)))


def downgrade() -> None:
    drop_columns("requests", "grant_sha256", "grant")
