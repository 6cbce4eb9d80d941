"""The store's tables (SQLAlchemy Core). Alembic migrations create and evolve them.

Times are seconds since the epoch (float): the same on SQLite and PostgreSQL, no time
zone ambiguity. JSON values are stored as text.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

requests = Table(
    "requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("agent_key", String(256), nullable=False),
    Column("agent_subject", String(512), nullable=False),
    Column("agent_issuer", String(64), nullable=False),
    Column("agent_claims", Text, nullable=False),
    Column("service", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("region", String(32)),
    Column("tier", String(10), nullable=False),
    Column("backend", String(10), nullable=False),
    Column("resources", Text, nullable=False),
    Column("duration_seconds", Integer, nullable=False),
    Column("justification", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("approvals_required", Integer, nullable=False),
    Column("delay_seconds", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("approved_at", Float),
    Column("collect_deadline", Float),
    Column("collected_at", Float),
    Column("decided_at", Float),
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("notification", Text, nullable=False, default="{}"),
    Column("intent", Text),
    Column("intent_sha256", String(64)),
    Column("impact", Text, nullable=False, default="{}"),
    Column("grant", Text),
    Column("grant_sha256", String(64)),
    Index("ix_requests_agent_created", "agent_key", "created_at"),
    Index("ix_requests_status", "status"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(40), ForeignKey("requests.id"), nullable=False),
    Column("approver", String(64), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("via", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("request_id", "approver", name="uq_approvals_request_approver"),
)

used_tokens = Table(
    "used_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("request_id", String(40), nullable=False),
    Column("used_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

issued = Table(
    "issued",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(40), nullable=False, index=True),
    Column("agent_key", String(256), nullable=False, index=True),
    Column("agent_subject", String(512), nullable=False),
    Column("service", String(64), nullable=False),
    Column("environment", String(64), nullable=False),
    Column("region", String(32)),
    Column("tier", String(10), nullable=False),
    Column("backend", String(10), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("access_key_id", String(128)),
    Column("source_identity", String(128)),
    Column("role_arn", String(2048)),
    Column("vault_accessor", String(128)),
    Column("lease_id", String(512)),
    Column("username", String(128)),
    # The SHA-256 of the grant issued (broker.policy.grant): what its audit records name.
    Column("grant_sha256", String(64)),
    Column("revoked_at", Float),
    Column("state", String(10), nullable=False, server_default="active"),
    Column("vault_policy", String(128)),
    Index("ix_issued_state", "state"),
)

freezes = Table(
    "freezes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("target", String(512), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(512), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("lifted_at", Float),
    Index("ix_freezes_active", "lifted_at"),
)

counter_events = Table(
    "counter_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(512), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_counter_events_key_at", "key", "at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("actor", String(512), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("service", String(64)),
    Column("environment", String(64)),
    Column("tier", String(10)),
    Column("request_id", String(40), index=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row (id = 1) holding the chain's head; writers lock it to append in order.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)
