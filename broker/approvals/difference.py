"""What an escalated request adds to the read tier, in words an approver reads. Pure.

An approver must see only what is *new*: "adds s3:PutObject on
arn:aws:s3:::payments-prod-invoices/2026/*". A plain set difference of "action on
resource" strings is not enough for AWS: a request naming ``.../2026/*`` narrows the
write tier's statements to that pattern, so ``s3:GetObject on .../2026/*`` differs as a
string from the read tier's ``s3:GetObject on .../*`` although read already allows it.
Here a grant counts as an addition only when no read statement covers its action, its
resource and its regions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.errors import BrokerError
from broker.intent.canonical import from_canonical
from broker.intent.compile import database_grants as intent_database_grants
from broker.intent.compile import session_policy as intent_session_policy
from broker.intent.compile import vault_policy as intent_vault_policy
from broker.policy.compiler import database_role, session_policy, vault_policy
from broker.policy.globs import covers
from broker.policy.grant import DatabaseGrant, Grant, grant_from_json
from broker.policy.grants import database_grants, vault_grants
from broker.policy.iam_actions import IamDatabase
from broker.policy.narrowing import hcl_paths, intersect_database, intersect_hcl, sql_facts
from broker.scopes.model import Environment, Scope, TierName
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class AwsGrant:
    """One (action, resource) an IAM statement allows, in the regions it is limited to."""

    action: str
    resource: str
    regions: frozenset[str] | None  # None: any region

    def describe(self) -> str:
        suffix = f" in {', '.join(sorted(self.regions))}" if self.regions else ""
        return f"{self.action} on {self.resource}{suffix}"


def permission_difference(record: RequestRecord, scope: Scope, iam: IamDatabase) -> tuple[str, ...]:
    """What the request adds to the read tier, in words: 'adds s3:PutObject on ...'."""
    env = scope.environments.get(record.environment)
    tier: TierName = record.tier  # type: ignore[assignment]
    if env is None or tier not in scope.tiers:
        return ()
    if record.grant is not None:
        try:
            grant = grant_from_json(record.grant)
        except ValueError:
            return ()
        return grant_additions(grant, scope, env, record.region, iam)
    if record.intent is not None:
        return _intent_additions(record, scope, iam)
    if record.backend == "aws" and env.aws is not None and record.region:
        try:
            granted = session_policy(scope, env, record.region, tier, iam, record.resources)
            baseline = session_policy(scope, env, record.region, "read", iam)
        except BrokerError:
            return ()
        # Coverage, not string equality: the request's resources narrow the tier's
        # patterns, and a narrowed read action is not an addition.
        return aws_additions(granted, baseline)
    if record.backend == "vault":
        return set_additions(
            vault_grants(vault_policy(scope, env, tier)),
            vault_grants(vault_policy(scope, env, "read")),
        )
    return set_additions(database_grants(scope, env, tier), database_grants(scope, env, "read"))


def grant_additions(
    grant: Grant, scope: Scope, env: Environment, region: str | None, iam: IamDatabase
) -> tuple[str, ...]:
    """What a stored grant adds to the read tier: the exact documents approvers approve."""
    if grant.backend == "aws":
        if env.aws is None or not region:
            return ()
        try:
            baseline = session_policy(scope, env, region, "read", iam)
        except BrokerError:
            return ()
        return aws_additions(grant.session_policy, baseline)
    if grant.backend == "vault":
        mine = hcl_paths(grant.vault_policy or "")
        read = hcl_paths(
            intersect_hcl(grant.vault_policy or "", vault_policy(scope, env, "read") or "")
        )
        return tuple(
            f"adds vault {capability} on {path}"
            for path, capabilities in sorted(mine.items())
            if not path.startswith("auth/token/")
            for capability in sorted(capabilities - read.get(path, set()))
        )
    role = database_role(scope, env, "read")
    if grant.database is None:
        return ()
    facts = sql_facts(grant.database.creation_statements)
    if role is not None:
        read_sql = DatabaseGrant(role.mount, role.db_name, role.creation_statements, ())
        facts -= sql_facts(intersect_database(grant.database, read_sql).creation_statements)
    return tuple(
        f"adds database {_sql_words(privilege, target)}"
        for privilege, target in sorted(facts)
        if privilege != "USAGE"
    )


def _sql_words(privilege: str, target: str) -> str:
    if privilege == "MEMBER":
        return f"membership in {target.strip(chr(34))} (DROP on every table it owns)"
    plain = target.removeprefix("TABLE ").replace('"', "")
    return f"{privilege} on {plain}"


def _intent_additions(record: RequestRecord, scope: Scope, iam: IamDatabase) -> tuple[str, ...]:
    """What an intent's own documents add to the read tier."""
    env = scope.environments[record.environment]
    try:
        intent = from_canonical(record.intent or "", record.intent_sha256 or "")
        if record.backend == "aws":
            if env.aws is None or not record.region:
                return ()
            granted = intent_session_policy(intent, record.region)
            baseline = session_policy(scope, env, record.region, "read", iam)
            return aws_additions(granted, baseline)
    except BrokerError:
        return ()
    if record.backend == "vault":
        return set_additions(
            vault_grants(intent_vault_policy(intent, "intent")),
            vault_grants(vault_policy(scope, env, "read")),
        )
    rows = {
        f"database {privilege} on {table}"
        for privileges, table in intent_database_grants(intent)
        for privilege in privileges.split(", ")
    }
    return set_additions(rows, database_grants(scope, env, "read"))


def aws_grants(policy: Mapping[str, Any] | None) -> list[AwsGrant]:
    """Every (action, resource) pair an IAM policy document allows."""
    if not policy:
        return []
    grants = []
    for statement in policy.get("Statement", ()):
        if statement.get("Effect") != "Allow":
            continue
        condition = statement.get("Condition", {}).get("StringEquals", {})
        regions = condition.get("aws:RequestedRegion")
        limited = frozenset(_as_list(regions)) if regions else None
        for action in _as_list(statement.get("Action", [])):
            for resource in _as_list(statement.get("Resource", [])):
                grants.append(AwsGrant(action, resource, limited))
    return grants


def aws_additions(
    granted: Mapping[str, Any] | None, baseline: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """'adds <action> on <resource>' for each grant of ``granted`` not covered by ``baseline``."""
    base = aws_grants(baseline)
    added = {
        grant.describe()
        for grant in aws_grants(granted)
        if not any(_covered(grant, b) for b in base)
    }
    return tuple(f"adds {text}" for text in sorted(added))


def set_additions(granted: Iterable[str], baseline: Iterable[str]) -> tuple[str, ...]:
    """'adds <grant>' for each textual grant (Vault, database) that the baseline lacks."""
    return tuple(f"adds {grant}" for grant in sorted(set(granted) - set(baseline)))


def _covered(grant: AwsGrant, by: AwsGrant) -> bool:
    if by.regions is not None and (grant.regions is None or not grant.regions <= by.regions):
        return False
    # IAM action names are case-insensitive; a pattern may use wildcards (s3:Get*).
    if not covers(by.action.lower(), grant.action.lower()):
        return False
    return covers(by.resource, grant.resource)


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)
