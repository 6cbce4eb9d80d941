"""The stored grant as approvers read it: its documents as text, and its SHA-256. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass

from broker.policy.grant import grant_from_json
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class GrantView:
    sha256: str
    short: str  # what Slack shows
    what: str  # which documents, in words
    text: str  # the documents themselves


def grant_view(record: RequestRecord) -> GrantView | None:
    """What the page shows of ``record``'s grant (None: stored before grants were, or not
    readable; collection refuses the latter)."""
    if record.grant is None:
        return None
    try:
        grant = grant_from_json(record.grant)
    except ValueError:
        return None
    if grant.backend == "aws":
        what = f"the STS session policy, on role {grant.role_arn}"
        text = json.dumps(grant.session_policy, indent=2, sort_keys=True)
    elif grant.backend == "vault":
        tier = grant.vault_tier_policy
        what = "the Vault ACL policy of the token" + (f" (the tier's, {tier})" if tier else "")
        text = grant.vault_policy or ""
    else:
        database = grant.database
        what = "the SQL that creates the database login" + (
            f" (connection {database.connection}, mount {database.mount})" if database else ""
        )
        text = "\n".join(database.creation_statements) if database else ""
    return GrantView(grant.sha256, grant.short_hash, what, text)
