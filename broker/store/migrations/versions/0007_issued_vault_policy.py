"""Issued Vault tokens name the policy they carry, so revoking one deletes a policy only
when it was made for its request (a read naming no paths carries its tier's shared one).

Rows written before this revision have none: their revocation deletes the request's
policy as before (a delete of a policy that does not exist changes nothing).

Revision ID: 0007_issued_vault_policy
Revises: 0006_issued_grant
"""

from __future__ import annotations

import sqlalchemy as sa

from broker.store.migrations.columns import add_columns, drop_columns

revision = "0007_issued_vault_policy"
down_revision = "0006_issued_grant"


def upgrade() -> None:
    add_columns("issued", sa.Column("vault_policy", sa.String(128)))


def downgrade() -> None:
    drop_columns("issued", "vault_policy")
