"""The broker's initial schema.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agent_key", sa.String(256), nullable=False),
        sa.Column("agent_subject", sa.String(512), nullable=False),
        sa.Column("agent_issuer", sa.String(64), nullable=False),
        sa.Column("agent_claims", sa.Text, nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("region", sa.String(32)),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("backend", sa.String(10), nullable=False),
        sa.Column("resources", sa.Text, nullable=False),
        sa.Column("duration_seconds", sa.Integer, nullable=False),
        sa.Column("justification", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("approvals_required", sa.Integer, nullable=False),
        sa.Column("delay_seconds", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("approved_at", sa.Float),
        sa.Column("collect_deadline", sa.Float),
        sa.Column("collected_at", sa.Float),
        sa.Column("decided_at", sa.Float),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("notification", sa.Text, nullable=False),
    )
    op.create_index("ix_requests_agent_created", "requests", ["agent_key", "created_at"])
    op.create_index("ix_requests_status", "requests", ["status"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(40), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("approver", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("request_id", "approver", name="uq_approvals_request_approver"),
    )
    op.create_table(
        "used_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("used_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "issued",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("agent_key", sa.String(256), nullable=False),
        sa.Column("agent_subject", sa.String(512), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("region", sa.String(32)),
        sa.Column("tier", sa.String(10), nullable=False),
        sa.Column("backend", sa.String(10), nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("access_key_id", sa.String(128)),
        sa.Column("source_identity", sa.String(128)),
        sa.Column("role_arn", sa.String(2048)),
        sa.Column("vault_accessor", sa.String(128)),
        sa.Column("lease_id", sa.String(512)),
        sa.Column("username", sa.String(128)),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_issued_request_id", "issued", ["request_id"])
    op.create_index("ix_issued_agent_key", "issued", ["agent_key"])
    op.create_index("ix_issued_expires_at", "issued", ["expires_at"])
    op.create_table(
        "freezes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("lifted_at", sa.Float),
    )
    op.create_index("ix_freezes_active", "freezes", ["lifted_at"])
    op.create_table(
        "counter_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_counter_events_key_at", "counter_events", ["key", "at"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(512), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("service", sa.String(64)),
        sa.Column("environment", sa.String(64)),
        sa.Column("tier", sa.String(10)),
        sa.Column("request_id", sa.String(40)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_log",
        "counter_events",
        "freezes",
        "issued",
        "used_tokens",
        "approvals",
        "requests",
    ):
        op.drop_table(table)
