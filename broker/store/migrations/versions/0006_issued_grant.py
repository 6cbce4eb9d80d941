"""Issued records name the SHA-256 of the grant issued (revocations audit it).

Revision ID: 0006_issued_grant
Revises: 0005_issued_state
"""

from __future__ import annotations

import sqlalchemy as sa

from broker.store.migrations.columns import add_columns, drop_columns

revision = "0006_issued_grant"
down_revision = "0005_issued_state"


def upgrade() -> None:
    add_columns("issued", sa.Column("grant_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    drop_columns("issued", "grant_sha256")
