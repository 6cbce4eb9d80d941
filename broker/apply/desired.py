"""What the upstreams should hold for a set of scopes: pure, from the compiled documents.

- IAM: one role per (scope, environment, tier) with the tier's permission policy inline,
  a trust policy admitting only the broker's principal and requiring SourceIdentity, and a
  maximum session duration covering the tier's TTL;
- Vault: one ACL policy per (scope, environment, tier) with KV paths;
- Vault database engine: one role per (scope, environment, tier) with a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.policy.compiler import DatabaseRole, database_role, vault_policy, vault_policy_name
from broker.policy.globs import substitute
from broker.scopes.model import Scope

PERMISSIONS_POLICY_NAME = "broker-tier-permissions"
MIN_ROLE_SESSION = 3600  # IAM's floor for MaxSessionDuration
MAX_ROLE_SESSION = 43200


def trust_policy(broker_principal: str) -> dict[str, Any]:
    """Only the broker may assume a tier role, and only naming a SourceIdentity."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BrokerAssumesWithSourceIdentity",
                "Effect": "Allow",
                "Principal": {"AWS": broker_principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringLike": {"sts:SourceIdentity": "*"}},
            },
            {
                "Sid": "BrokerTagsSessions",
                "Effect": "Allow",
                "Principal": {"AWS": broker_principal},
                "Action": ["sts:TagSession", "sts:SetSourceIdentity"],
            },
        ],
    }


@dataclass(frozen=True)
class DesiredRole:
    account: str
    arn: str
    path: str
    name: str
    permissions: Mapping[str, Any]
    max_session_seconds: int
    scope: str
    environment: str
    tier: str


@dataclass(frozen=True)
class DesiredVaultPolicy:
    name: str
    policy: str
    scope: str


@dataclass(frozen=True)
class Desired:
    roles: tuple[DesiredRole, ...]
    vault_policies: tuple[DesiredVaultPolicy, ...]
    database_roles: tuple[DatabaseRole, ...]


def split_role_arn(arn: str) -> tuple[str, str, str]:
    """'arn:aws:iam::123:role/broker/x' -> ('123', '/broker/', 'x')."""
    account = arn.split(":")[4]
    resource = arn.split(":", 5)[5].removeprefix("role")
    path, _, name = resource.rpartition("/")
    return account, (path + "/") if path else "/", name


def desired_state(scopes: Mapping[str, Scope], compiled: Mapping[str, Any]) -> Desired:
    roles: list[DesiredRole] = []
    policies: list[DesiredVaultPolicy] = []
    database: list[DatabaseRole] = []
    for service in sorted(scopes):
        scope = scopes[service]
        for env_name in sorted(scope.environments):
            env = scope.environments[env_name]
            for tier_name, tier in scope.tiers.items():
                entry = compiled[service][env_name][tier_name]
                if env.aws is not None and tier_name in env.aws.roles:
                    arn = substitute(env.aws.roles[tier_name], env.placeholders(None))
                    account, path, name = split_role_arn(arn)
                    document = entry["aws"]["role_policy"]
                    if document is not None:
                        roles.append(
                            DesiredRole(
                                account=account,
                                arn=arn,
                                path=path,
                                name=name,
                                permissions=document,
                                max_session_seconds=min(
                                    MAX_ROLE_SESSION, max(MIN_ROLE_SESSION, tier.ttl_seconds)
                                ),
                                scope=service,
                                environment=env_name,
                                tier=tier_name,
                            )
                        )
                if env.vault is not None:
                    hcl = vault_policy(scope, env, tier_name)
                    if hcl is not None:
                        policies.append(
                            DesiredVaultPolicy(
                                vault_policy_name(service, env_name, tier_name), hcl, service
                            )
                        )
                role = database_role(scope, env, tier_name)
                if role is not None:
                    database.append(role)
    return Desired(tuple(roles), tuple(policies), tuple(database))
