"""A grant: exactly the documents one request is given, fixed (and hashed) when it is made.

What an approver approves and what the backend receives are the same value: the STS session
policy and the tier role, the Vault ACL policy, or the SQL that creates the database login,
with the lifetime. A write or delete request's grant is compiled when the request opens,
stored with its SHA-256, shown to the approvers and issued at collection as stored (or, if
the scope changed meanwhile, its intersection with what the scope grants now:
:mod:`broker.policy.narrowing`). A read request's grant is compiled and issued at once.

Pure. An intent (:mod:`broker.intent`) produces the same documents, so a grant can be made
from one as well.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from broker.policy.compiler import database_role, dumps, vault_policy, vault_policy_name
from broker.policy.globs import substitute
from broker.scopes.model import Backend, Environment, Scope, TierName

# The name of everything made upstream for one request (a Vault ACL policy, a Vault database
# role): within the token role's ``broker-*``, apart from the tiers' own names.
REQUEST_PREFIX = "broker-req-"


def request_artifact(request_id: str) -> str:
    """The name of the Vault policy or database role made for ``request_id``."""
    return REQUEST_PREFIX + request_id


@dataclass(frozen=True)
class DatabaseGrant:
    """The SQL of one request's dynamic login, on one Vault database connection."""

    mount: str
    connection: str
    creation_statements: tuple[str, ...]
    revocation_statements: tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """What one request is given. Exactly one backend's documents are set."""

    backend: Backend
    tier: TierName
    duration_seconds: int
    role_arn: str | None = None  # aws: the tier role, the ceiling of the session
    session_policy: Mapping[str, Any] | None = None  # aws
    vault_policy: str | None = None  # vault: ACL policy (HCL)
    # vault: the tier's own policy, which holds exactly ``vault_policy`` (a request naming
    # no paths): the token carries it and no policy is made for the request.
    vault_tier_policy: str | None = None
    database: DatabaseGrant | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "backend": self.backend,
            "tier": self.tier,
            "duration_seconds": self.duration_seconds,
        }
        if self.role_arn is not None:
            data["role_arn"] = self.role_arn
        if self.session_policy is not None:
            data["session_policy"] = json.loads(dumps(self.session_policy))
        if self.vault_policy is not None:
            data["vault_policy"] = self.vault_policy
        if self.vault_tier_policy is not None:
            data["vault_tier_policy"] = self.vault_tier_policy
        if self.database is not None:
            data["database"] = {
                "mount": self.database.mount,
                "connection": self.database.connection,
                "creation_statements": list(self.database.creation_statements),
                "revocation_statements": list(self.database.revocation_statements),
            }
        return data

    def canonical_json(self) -> str:
        """The stored form: canonical JSON (sorted keys, no white space); what is hashed."""
        return dumps(self.as_dict())

    @cached_property
    def sha256(self) -> str:
        # Computed once per grant: every issuance's write-ahead, record and audit name it.
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        """What a Slack message shows: enough to compare with the page and the audit."""
        return self.sha256[:12]

    @property
    def empty(self) -> bool:
        """Grants nothing (what is left of a grant the scope no longer allows)."""
        if self.backend == "aws":
            return not (self.session_policy or {}).get("Statement")
        if self.backend == "vault":
            return not self.vault_policy or 'path "' not in self.vault_policy
        if self.database is None:
            return True
        return not any(s.startswith("GRANT ") for s in self.database.creation_statements)


def grant_from_json(text: str) -> Grant:
    """A stored grant read back; raises ValueError when the text is not one."""
    try:
        data = json.loads(text)
        database = data.get("database")
        grant = Grant(
            backend=data["backend"],
            tier=data["tier"],
            duration_seconds=int(data["duration_seconds"]),
            role_arn=data.get("role_arn"),
            session_policy=data.get("session_policy"),
            vault_policy=data.get("vault_policy"),
            vault_tier_policy=data.get("vault_tier_policy"),
            database=None
            if database is None
            else DatabaseGrant(
                mount=database["mount"],
                connection=database["connection"],
                creation_statements=tuple(database["creation_statements"]),
                revocation_statements=tuple(database["revocation_statements"]),
            ),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a stored grant: {type(e).__name__}") from e
    if grant.canonical_json() != text:
        raise ValueError("not a stored grant: not in canonical form")
    return grant


def compile_grant(
    scope: Scope,
    env: Environment,
    tier: TierName,
    backend: Backend,
    region: str | None,
    resources: Sequence[str],
    duration_seconds: int,
    session_policy: Mapping[str, Any] | None,
) -> Grant:
    """The grant of a request already resolved against ``scope`` (its resources checked,
    its duration clamped, its session policy compiled for them)."""
    if backend == "aws":
        assert env.aws is not None and tier in env.aws.roles
        arn = substitute(env.aws.roles[tier], env.placeholders(region))
        return Grant(backend, tier, duration_seconds, arn, session_policy)
    if backend == "vault":
        hcl = vault_policy(scope, env, tier, resources)
        shared = None if resources else vault_policy_name(scope.service, env.name, tier)
        return Grant(backend, tier, duration_seconds, vault_policy=hcl, vault_tier_policy=shared)
    role = database_role(scope, env, tier, resources, ttl=duration_seconds)
    assert role is not None
    database = DatabaseGrant(
        role.mount, role.db_name, role.creation_statements, role.revocation_statements
    )
    return Grant(backend, tier, duration_seconds, database=database)
