"""Compare what the upstreams hold with what the scopes want; list and apply the changes.

Reading never changes anything; each :class:`Change` carries the call that applies it, so
``broker scopes apply`` can print the whole plan first and apply only with ``--yes``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from broker.apply.desired import (
    PERMISSIONS_POLICY_NAME,
    Desired,
    DesiredRole,
    DesiredVaultPolicy,
    trust_policy,
)
from broker.issuers.vault_token import TOKEN_ROLE, TOKEN_ROLE_SETTINGS
from broker.policy.compiler import DatabaseRole


@dataclass(frozen=True)
class Change:
    upstream: str  # "aws account 123...", "vault"
    kind: str  # "create" or "update"
    target: str
    details: tuple[str, ...] = ()
    apply: Callable[[], None] = field(default=lambda: None, compare=False, repr=False)

    def render(self) -> list[str]:
        mark = "+" if self.kind == "create" else "~"
        return [f"  {mark} {self.kind} {self.target}", *(f"      {d}" for d in self.details)]


class RoleManager(Protocol):
    """IAM in one account, as apply needs it."""

    def get_role(self, name: str) -> dict[str, Any] | None: ...
    def get_inline_policy(self, role: str, policy: str) -> dict[str, Any] | None: ...
    def create_role(self, role: DesiredRole, trust: dict[str, Any]) -> None: ...
    def update_trust(self, role: str, trust: dict[str, Any]) -> None: ...
    def update_max_session(self, role: str, seconds: int) -> None: ...
    def put_inline_policy(self, role: str, policy: str, document: dict[str, Any]) -> None: ...


class VaultManager(Protocol):
    def read_token_role(self, name: str) -> dict[str, Any] | None: ...
    def write_token_role(self, name: str, settings: dict[str, Any]) -> None: ...
    def read_policy(self, name: str) -> str | None: ...
    def write_policy(self, name: str, policy: str) -> None: ...
    def read_database_role(self, mount: str, name: str) -> dict[str, Any] | None: ...
    def write_database_role(self, role: DatabaseRole) -> None: ...
    def connection_exists(self, mount: str, name: str) -> bool: ...


def canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True, indent=2)


def _diff(before: str, after: str) -> tuple[str, ...]:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1)
    return tuple(line for line in lines if not line.startswith(("---", "+++")))


def aws_changes(
    roles: Iterable[DesiredRole], principal: str, managers: Callable[[str], RoleManager]
) -> list[Change]:
    changes: list[Change] = []
    trust = trust_policy(principal)
    for role in roles:
        manager = managers(role.account)
        upstream = f"aws account {role.account}"
        current = manager.get_role(role.name)
        document = dict(role.permissions)
        if current is None:
            changes.append(
                Change(
                    upstream,
                    "create",
                    f"role {role.arn}",
                    (
                        f"trust: only {principal}, SourceIdentity required",
                        f"max session: {role.max_session_seconds}s",
                        f"permissions ({PERMISSIONS_POLICY_NAME}):",
                        *canonical(document).splitlines(),
                    ),
                    apply=_create_role(manager, role, trust, document),
                )
            )
            continue
        if canonical(current.get("AssumeRolePolicyDocument")) != canonical(trust):
            changes.append(
                Change(
                    upstream,
                    "update",
                    f"trust policy of role {role.arn}",
                    _diff(canonical(current.get("AssumeRolePolicyDocument")), canonical(trust)),
                    apply=partial(manager.update_trust, role.name, trust),
                )
            )
        if int(current.get("MaxSessionDuration", 3600)) != role.max_session_seconds:
            changes.append(
                Change(
                    upstream,
                    "update",
                    f"max session of role {role.arn}",
                    (f"{current.get('MaxSessionDuration')}s -> {role.max_session_seconds}s",),
                    apply=partial(manager.update_max_session, role.name, role.max_session_seconds),
                )
            )
        existing = manager.get_inline_policy(role.name, PERMISSIONS_POLICY_NAME)
        if existing is None or canonical(existing) != canonical(document):
            changes.append(
                Change(
                    upstream,
                    "update" if existing is not None else "create",
                    f"permissions of role {role.arn}",
                    _diff(canonical(existing or {}), canonical(document)),
                    apply=partial(
                        manager.put_inline_policy, role.name, PERMISSIONS_POLICY_NAME, document
                    ),
                )
            )
    return changes


def _create_role(
    manager: RoleManager, role: DesiredRole, trust: dict[str, Any], document: dict[str, Any]
) -> Callable[[], None]:
    def run() -> None:
        manager.create_role(role, trust)
        manager.put_inline_policy(role.name, PERMISSIONS_POLICY_NAME, document)

    return run


def vault_changes(
    policies: Iterable[DesiredVaultPolicy],
    database: Iterable[DatabaseRole],
    vault: VaultManager,
    token_role: str | None = TOKEN_ROLE,
) -> tuple[list[Change], list[str]]:
    """Changes, and problems that block applying (a missing database connection).

    With Vault policies to manage comes the token role agents' tokens are created through.
    """
    changes: list[Change] = []
    problems: list[str] = []
    policies = list(policies)
    if policies and token_role:
        current_role = vault.read_token_role(token_role)
        wanted_role = dict(TOKEN_ROLE_SETTINGS)
        have = {key: (current_role or {}).get(key) for key in wanted_role}
        if current_role is None or canonical(have) != canonical(wanted_role):
            changes.append(
                Change(
                    "vault",
                    "create" if current_role is None else "update",
                    f"token role {token_role}",
                    tuple(canonical(wanted_role).splitlines()),
                    apply=partial(vault.write_token_role, token_role, wanted_role),
                )
            )

    for policy in policies:
        current = vault.read_policy(policy.name)
        if current is None:
            changes.append(
                Change(
                    "vault",
                    "create",
                    f"policy {policy.name}",
                    tuple(policy.policy.splitlines()),
                    apply=partial(vault.write_policy, policy.name, policy.policy),
                )
            )
        elif current.strip() != policy.policy.strip():
            changes.append(
                Change(
                    "vault",
                    "update",
                    f"policy {policy.name}",
                    _diff(current, policy.policy),
                    apply=partial(vault.write_policy, policy.name, policy.policy),
                )
            )
    for role in database:
        if not vault.connection_exists(role.mount, role.db_name):
            problems.append(
                f"vault: database connection '{role.db_name}' (mount {role.mount}) "
                f"does not exist; configure it before applying role {role.name}"
            )
            continue
        existing = vault.read_database_role(role.mount, role.name)
        wanted = _role_fields(role)
        if existing is None:
            changes.append(
                Change(
                    "vault",
                    "create",
                    f"database role {role.mount}/{role.name}",
                    (
                        f"connection {role.db_name}, ttl {role.default_ttl}s",
                        *role.creation_statements,
                    ),
                    apply=partial(vault.write_database_role, role),
                )
            )
        elif canonical(_role_fields_from(existing)) != canonical(wanted):
            changes.append(
                Change(
                    "vault",
                    "update",
                    f"database role {role.mount}/{role.name}",
                    _diff(canonical(_role_fields_from(existing)), canonical(wanted)),
                    apply=partial(vault.write_database_role, role),
                )
            )
    return changes, problems


def _role_fields(role: DatabaseRole) -> dict[str, Any]:
    return {
        "db_name": role.db_name,
        "creation_statements": list(role.creation_statements),
        "revocation_statements": list(role.revocation_statements),
        "default_ttl": role.default_ttl,
        "max_ttl": role.max_ttl,
    }


def _role_fields_from(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: data.get(key)
        for key in (
            "db_name",
            "creation_statements",
            "revocation_statements",
            "default_ttl",
            "max_ttl",
        )
    }


def all_changes(
    desired: Desired,
    principal: str | None,
    managers: Callable[[str], RoleManager] | None,
    vault: VaultManager | None,
) -> tuple[list[Change], list[str]]:
    changes: list[Change] = []
    problems: list[str] = []
    if desired.roles:
        if managers is None or principal is None:
            problems.append("aws: not configured; cannot manage the tier roles")
        else:
            changes.extend(aws_changes(desired.roles, principal, managers))
    if desired.vault_policies or desired.database_roles:
        if vault is None:
            problems.append("vault: not configured; cannot manage policies and database roles")
        else:
            more, issues = vault_changes(desired.vault_policies, desired.database_roles, vault)
            changes.extend(more)
            problems.extend(issues)
    return changes, problems
