"""Scope -> the exact documents the broker hands to AWS, Vault and PostgreSQL.

Pure functions, deterministic output: the same scope gives byte-identical documents
(actions and resources sorted, JSON with sorted keys). Nothing here talks to a server.

- :func:`role_policy`: the permission policy of a tier's IAM role, for one environment
  (all its regions). It is the ceiling for every session of that role.
- :func:`session_policy`: the STS session policy for one request, narrowed to its
  environment, region and resources. STS intersects it with the role policy.
- :func:`vault_policy`: the Vault ACL policy (HCL) of a tier's KV paths.
- :func:`database_role`: the Vault database-engine role (creation/revocation SQL) of a tier.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from broker.errors import BadRequest, PolicyTooLarge
from broker.policy.globs import covers, substitute
from broker.policy.iam_actions import GLOBAL_SERVICES, IamDatabase
from broker.scopes.model import (
    AwsStatement,
    Environment,
    Scope,
    TierName,
    tiers_up_to,
)

POLICY_VERSION = "2012-10-17"
# STS rejects a session policy whose plain text exceeds 2,048 characters (and, separately,
# one whose packed binary form exceeds its limit, which is always smaller in practice).
SESSION_POLICY_MAX_CHARS = 2048

Policy = dict[str, Any]


def dumps(document: Any) -> str:
    """Canonical JSON: sorted keys, no whitespace; what is sent to AWS and compared."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _expanded_actions(statement: AwsStatement, iam: IamDatabase) -> list[str]:
    return list(_expand_all(iam, statement.actions))


@lru_cache(maxsize=4096)
def _expand_all(iam: IamDatabase, actions: tuple[str, ...]) -> tuple[str, ...]:
    """Concrete, sorted action names of a statement's action list (wildcards expanded)."""
    return tuple(sorted({info.full_name for action in actions for info in iam.expand(action)}))


def _concrete(
    patterns: Iterable[str], env: Environment, regions: Sequence[str | None]
) -> list[str]:
    account = env.aws.account if env.aws else None
    values = tuple(_placeholder_values(env.name, account, region) for region in regions)
    return list(_concrete_cached(tuple(patterns), values))


@lru_cache(maxsize=4096)
def _placeholder_values(
    env: str, account: str | None, region: str | None
) -> tuple[tuple[str, str], ...]:
    values = {"env": env}
    if account is not None:
        values["account"] = account
    if region is not None:
        values["region"] = region
    return tuple(sorted(values.items()))


@lru_cache(maxsize=65536)
def _concrete_cached(
    patterns: tuple[str, ...], values: tuple[tuple[tuple[str, str], ...], ...]
) -> tuple[str, ...]:
    """Patterns with placeholders filled for each set of values, sorted and de-duplicated.

    Memoized: cumulative tiers and per-region documents fill the same patterns many times.
    """
    return tuple(sorted({substitute(p, dict(v)) for p in patterns for v in values}))


def _statements(
    rows: Iterable[tuple[list[str], list[str]]], regions: Sequence[str]
) -> list[Policy]:
    """Merge (actions, resources) rows into statements, split by regional/global service.

    Regional services get an aws:RequestedRegion condition; global ones (IAM...) are served
    from us-east-1 whatever the region, so that condition would deny them.
    """
    merged: dict[tuple[tuple[str, ...], bool], set[str]] = {}
    for actions, resources in rows:
        key = tuple(resources)
        for action in actions:
            merged.setdefault((key, _is_regional(action)), set()).add(action)
    statements = []
    for (resource_key, regional), action_set in sorted(merged.items()):
        statement: Policy = {
            "Effect": "Allow",
            "Action": sorted(action_set),
            "Resource": list(resource_key),
        }
        if regional and regions:
            statement["Condition"] = {"StringEquals": {"aws:RequestedRegion": sorted(regions)}}
        statements.append(statement)
    # Identical action lists on different resources could merge further, but keeping one
    # statement per resource set is what a reviewer reads most easily.
    return statements


@lru_cache(maxsize=16384)
def _is_regional(action: str) -> bool:
    return action.split(":", 1)[0] not in GLOBAL_SERVICES


def role_policy(scope: Scope, env: Environment, tier: TierName, iam: IamDatabase) -> Policy | None:
    """The tier role's permission policy in one environment, across its allowed regions."""
    if env.aws is None:
        return None
    regions = env.aws.regions
    rows = [
        (_expanded_actions(statement, iam), _concrete(statement.resources, env, regions))
        for statement in scope.statements(tier)
    ]
    statements = _statements(rows, regions)
    if not statements:
        return None
    return {"Version": POLICY_VERSION, "Statement": statements}


def session_policy(
    scope: Scope,
    env: Environment,
    region: str,
    tier: TierName,
    iam: IamDatabase,
    resources: Sequence[str] = (),
    check_size: bool = True,
) -> Policy:
    """The session policy for one request: its region, and its resources when it names any.

    Every requested resource must be covered by a pattern of the tier; statements covering
    none of them are dropped, so the session can touch only what was asked for. Raises
    :class:`BadRequest` for an uncovered resource and :class:`PolicyTooLarge` when the
    result does not fit STS's limit (never truncated).
    """
    if env.aws is None or region not in env.aws.regions:
        raise BadRequest(f"region '{region}' is not allowed in environment {env.name}", "region")
    rows: list[tuple[list[str], list[str]]] = []
    covered: set[str] = set()
    for statement in scope.statements(tier):
        patterns = _concrete(statement.resources, env, [region])
        actions = _expanded_actions(statement, iam)
        if not resources or patterns == ["*"]:
            rows.append((actions, patterns))
            continue
        chosen = sorted({r for r in resources if any(covers(p, r) for p in patterns)})
        covered.update(chosen)
        if chosen:
            rows.append((actions, chosen))
    missing = sorted(set(resources) - covered)
    if missing:
        raise BadRequest(
            f"resource '{missing[0]}' is outside what tier {tier} of {scope.service} grants "
            f"in {env.name}/{region}",
            "resources",
        )
    document = {"Version": POLICY_VERSION, "Statement": _statements(rows, [region])}
    if not check_size:
        return document
    size = len(json.dumps(document, separators=(",", ":")))  # key order does not change size
    if size > SESSION_POLICY_MAX_CHARS:
        raise PolicyTooLarge(
            f"the session policy for {scope.service}/{env.name}/{region}/{tier} is {size} "
            f"characters; STS accepts at most {SESSION_POLICY_MAX_CHARS}. Name fewer resources "
            "per request, or move statements into another scope",
            tier,
        )
    return document


# -- Vault ---------------------------------------------------------------------------------

KV2_CAPABILITIES: dict[TierName, dict[str, tuple[str, ...]]] = {
    "read": {"data": ("read",), "metadata": ("list", "read")},
    "write": {"data": ("create", "update")},
    "delete": {
        "data": ("delete",),
        "delete": ("update",),
        "destroy": ("update",),
        "metadata": ("delete",),
    },
}
KV1_CAPABILITIES: dict[TierName, tuple[str, ...]] = {
    "read": ("list", "read"),
    "write": ("create", "update"),
    "delete": ("delete",),
}
CAPABILITY_ORDER = ("create", "read", "update", "patch", "delete", "list")
# No renew-self: tokens are issued non-renewable and live exactly what their record says.
TOKEN_SELF_PATHS = (
    ("auth/token/lookup-self", "read"),
    ("auth/token/revoke-self", "update"),
)


def vault_policy_name(service: str, environment: str, tier: TierName) -> str:
    return f"broker-{service}-{environment}-{tier}"


def vault_policy(
    scope: Scope, env: Environment, tier: TierName, resources: Sequence[str] = ()
) -> str | None:
    """The ACL policy (HCL) for a tier's KV paths; tiers are cumulative.

    With ``resources`` (KV paths a request named, already checked to be inside the tier's
    paths), the policy of that request: the tier's capabilities on those paths only.
    """
    if env.vault is None:
        return None
    kv = env.vault
    regions: Sequence[str | None] = env.aws.regions if env.aws else (None,)
    paths = sorted(set(resources)) if resources else _concrete(kv.paths, env, regions)
    grants: dict[str, set[str]] = {}
    for name in tiers_up_to(tier):
        if name not in scope.tiers:
            continue
        for path in paths:
            if kv.version == 2:
                for prefix, capabilities in KV2_CAPABILITIES[name].items():
                    grants.setdefault(f"{kv.mount}/{prefix}/{path}", set()).update(capabilities)
            else:
                grants.setdefault(f"{kv.mount}/{path}", set()).update(KV1_CAPABILITIES[name])
    policy_name = vault_policy_name(scope.service, env.name, tier)
    if resources:
        policy_name += " for one request"
    header = f"# {policy_name}: generated by the broker from scope {scope.service}; do not edit\n"
    blocks = []
    for path in sorted(grants):
        ordered = sorted(grants[path], key=CAPABILITY_ORDER.index)
        rendered = ", ".join(f'"{c}"' for c in ordered)
        blocks.append(f'path "{path}" {{\n  capabilities = [{rendered}]\n}}\n')
    # Tokens are created without Vault's default policy; these let an agent look its own
    # token up and revoke it when done (never renew it: see broker.issuers.vault_token).
    for path, capability in TOKEN_SELF_PATHS:
        blocks.append(f'path "{path}" {{\n  capabilities = ["{capability}"]\n}}\n')
    return header + "\n".join(blocks)


# -- PostgreSQL through Vault's database engine ---------------------------------------------

DATABASE_PRIVILEGES: dict[TierName, tuple[str, ...]] = {
    "read": ("SELECT",),
    "write": ("SELECT", "INSERT", "UPDATE"),
    "delete": ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"),
}


@dataclass(frozen=True)
class DatabaseRole:
    """A Vault database role: the SQL that creates and drops each dynamic login."""

    mount: str
    name: str
    db_name: str
    creation_statements: tuple[str, ...]
    revocation_statements: tuple[str, ...]
    default_ttl: int
    max_ttl: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "mount": self.mount,
            "name": self.name,
            "db_name": self.db_name,
            "creation_statements": list(self.creation_statements),
            "revocation_statements": list(self.revocation_statements),
            "default_ttl": self.default_ttl,
            "max_ttl": self.max_ttl,
        }


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _object_sql(obj: str) -> tuple[str, str]:
    """'public.invoices' -> ('"public"', 'TABLE "public"."invoices"'); 'x.*' -> all tables."""
    schema, table = obj.split(".", 1)
    if table == "*":
        return _quote_ident(schema), f"ALL TABLES IN SCHEMA {_quote_ident(schema)}"
    return _quote_ident(schema), f"TABLE {_quote_ident(schema)}.{_quote_ident(table)}"


def login_role_sql(
    grants: Sequence[tuple[str, str]], owner_role: str | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Creation and revocation SQL of a dynamic login holding ``(privileges, object)`` grants.

    Objects are 'schema.table' or 'schema.*'; ``owner_role`` (if any) is granted as well.
    """
    user = '"{{name}}"'
    schemas = sorted({_object_sql(obj)[0] for _, obj in grants})
    creation = [
        f"CREATE ROLE {user} WITH LOGIN PASSWORD '{{{{password}}}}' "
        "VALID UNTIL '{{expiration}}';",
        *[f"GRANT USAGE ON SCHEMA {schema} TO {user};" for schema in schemas],
        *[f"GRANT {privileges} ON {_object_sql(obj)[1]} TO {user};" for privileges, obj in grants],
    ]
    # Revocation must work even after a delete-tier login dropped a table it was granted
    # on, so it names no table: DROP OWNED BY revokes every privilege the login holds in
    # this database (and drops anything it created), whatever still exists.
    revocation = [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}';",
    ]
    if owner_role:
        # Membership carries everything the owner role owns: give each service its own.
        owner = _quote_ident(owner_role)
        creation.append(f"GRANT {owner} TO {user};")
        revocation.append(f"REVOKE {owner} FROM {user};")
    revocation += [f"DROP OWNED BY {user};", f"DROP ROLE IF EXISTS {user};"]
    return tuple(creation), tuple(revocation)


def database_role(
    scope: Scope,
    env: Environment,
    tier: TierName,
    resources: Sequence[str] = (),
    ttl: int | None = None,
) -> DatabaseRole | None:
    """The creation and revocation SQL for a tier's dynamic PostgreSQL logins.

    read: SELECT; write: + INSERT, UPDATE; delete: + DELETE, TRUNCATE, and membership in
    ``owner_role`` (PostgreSQL lets only an owner DROP a table) when the scope names one.
    With ``resources`` (tables a request named, already checked against the scope's
    objects) and ``ttl``: the role of that request, granting on those tables only.
    """
    database = env.database
    if database is None or tier not in database.roles or tier not in scope.tiers:
        return None
    privileges = ", ".join(DATABASE_PRIVILEGES[tier])
    objects = sorted(set(resources)) if resources else sorted(database.objects)
    creation, revocation = login_role_sql(
        [(privileges, obj) for obj in objects],
        database.owner_role if tier == "delete" else None,
    )
    ttl = ttl or scope.tiers[tier].ttl_seconds
    return DatabaseRole(
        mount=database.mount,
        name=database.roles[tier],
        db_name=database.connection,
        creation_statements=creation,
        revocation_statements=revocation,
        default_ttl=ttl,
        max_ttl=ttl,
    )


# -- Everything for one scope --------------------------------------------------------------


def compile_scope(scope: Scope, iam: IamDatabase) -> dict[str, Any]:
    """Every document of a scope, nested environment -> tier, for plan --json and apply."""
    result: dict[str, Any] = {}
    for env_name in sorted(scope.environments):
        env = scope.environments[env_name]
        tiers: dict[str, Any] = {}
        for tier in scope.tiers:
            entry: dict[str, Any] = {"ttl_seconds": scope.tiers[tier].ttl_seconds}
            if env.aws is not None:
                entry["aws"] = {
                    "role_arn": substitute(env.aws.roles[tier], env.placeholders(None))
                    if tier in env.aws.roles
                    else None,
                    "role_policy": role_policy(scope, env, tier, iam),
                    # Documents differ between regions only by the region's name: checking
                    # the size of the longest name's is checking them all.
                    "session_policies": {
                        region: session_policy(
                            scope,
                            env,
                            region,
                            tier,
                            iam,
                            check_size=region == max(env.aws.regions, key=len),
                        )
                        for region in env.aws.regions
                    },
                }
            if env.vault is not None:
                entry["vault"] = {
                    "policy_name": vault_policy_name(scope.service, env_name, tier),
                    "policy": vault_policy(scope, env, tier),
                }
            role = database_role(scope, env, tier)
            if role is not None:
                entry["database"] = role.as_dict()
            tiers[tier] = entry
        result[env_name] = tiers
    return result
