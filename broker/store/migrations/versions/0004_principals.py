"""Agents named by issuer and subject (principals) in requests, issued credentials, freezes.

Before this revision an agent was named by its subject alone, so the same subject from two
issuers was one agent. The local issuer's subjects (``agent:NAME``) are already principals
and stay as they are; another issuer's become ``ISSUER:SUBJECT`` (the issuer is known from
each request's ``agent_issuer`` and each issued credential's ``agent_key``).

A freeze of an agent kept its subject only. It now stops, besides that principal, the
same subject of every other issuer it was seen from (in requests or issued credentials):
a freeze never lets go of an agent it stopped before. Audit records are not rewritten
(the hash chain covers them): older ones name such agents by their subject.

Revision ID: 0004_principals
Revises: 0003_request_grant
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_principals"
down_revision = "0003_request_grant"

LOCAL = "local"

requests = sa.table(
    "requests",
    sa.column("id", sa.String),
    sa.column("agent_issuer", sa.String),
    sa.column("agent_subject", sa.String),
)
issued = sa.table(
    "issued",
    sa.column("id", sa.Integer),
    sa.column("agent_key", sa.String),
    sa.column("agent_subject", sa.String),
)
freezes = sa.table(
    "freezes",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("target", sa.String),
    sa.column("reason", sa.Text),
    sa.column("created_by", sa.String),
    sa.column("created_at", sa.Float),
    sa.column("lifted_at", sa.Float),
)


def _principal(issuer: str, subject: str) -> str:
    """As broker.identity.model.principal_of (copied: a migration must not change later)."""
    if issuer == LOCAL and subject.startswith("agent:"):
        return subject
    return f"{issuer}:{subject}"


def upgrade() -> None:
    bind = op.get_bind()
    seen: dict[str, set[str]] = {}  # subject -> the issuers it came from
    for row in bind.execute(
        sa.select(requests.c.id, requests.c.agent_issuer, requests.c.agent_subject)
    ).all():
        seen.setdefault(row.agent_subject, set()).add(row.agent_issuer)
        if row.agent_issuer != LOCAL:
            bind.execute(
                requests.update()
                .where(requests.c.id == row.id)
                .values(agent_subject=_principal(row.agent_issuer, row.agent_subject))
            )
    for row in bind.execute(
        sa.select(issued.c.id, issued.c.agent_key, issued.c.agent_subject)
    ).all():
        issuer = str(row.agent_key).split(":", 1)[0]
        seen.setdefault(row.agent_subject, set()).add(issuer)
        if issuer != LOCAL:
            bind.execute(
                issued.update()
                .where(issued.c.id == row.id)
                .values(agent_subject=_principal(issuer, row.agent_subject))
            )
    active = bind.execute(
        sa.select(freezes).where(freezes.c.kind == "agent", freezes.c.lifted_at.is_(None))
    ).all()
    for freeze in active:
        targets = {_principal(issuer, freeze.target) for issuer in seen.get(freeze.target, ())}
        for target in sorted(targets - {freeze.target}):
            values: dict[str, Any] = {
                "kind": "agent",
                "target": target,
                "reason": freeze.reason,
                "created_by": freeze.created_by,
                "created_at": freeze.created_at,
            }
            bind.execute(freezes.insert().values(**values))


def downgrade() -> None:
    raise NotImplementedError("agents named by subject alone cannot be told apart again")
