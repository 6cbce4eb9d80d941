"""Issued Vault tokens name the policy they carry, so revoking one deletes a policy only
when it was made for its request (a read naming no paths carries its tier's shared one).

Rows written before this revision have none: their revocation deletes the request's
policy as before (a delete of a policy that does not exist changes nothing).

Revision ID: 0007_issued_vault_policy
Revises: 0006_issued_grant
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_issued_vault_policy"
down_revision = "0006_issued_grant"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued") as batch:
        batch.add_column(sa.Column("vault_policy", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("issued") as batch:
        batch.drop_column("vault_policy")
