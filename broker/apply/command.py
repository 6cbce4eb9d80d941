"""`broker scopes apply`: show the plan, then write it to IAM and Vault only with --yes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError
from hvac import exceptions as vault_errors
from requests import RequestException

from broker.apply.changes import Change, RoleManager, VaultManager, all_changes
from broker.apply.desired import desired_state
from broker.apply.upstreams import IamRoleManager
from broker.errors import BrokerError
from broker.issuers.aws_accounts import AwsAccounts, failure_reason
from broker.scopes.registry import ScopeSet

UPSTREAM_ERRORS = (
    BotoCoreError,
    ClientError,
    vault_errors.VaultError,
    RequestException,
    BrokerError,
)


@dataclass(frozen=True)
class ApplyResult:
    changes: tuple[Change, ...]
    problems: tuple[str, ...]
    applied: int

    @property
    def ok(self) -> bool:
        return not self.problems


def render_plan(changes: list[Change], problems: list[str]) -> list[str]:
    lines: list[str] = []
    upstream = None
    for change in changes:
        if change.upstream != upstream:
            upstream = change.upstream
            lines.append(upstream)
        lines.extend(change.render())
    for problem in problems:
        lines.append(f"problem: {problem}")
    creates = sum(1 for c in changes if c.kind == "create")
    if not changes and not problems:
        lines.append("No changes: the upstreams already match the scopes.")
    elif changes:
        lines.append(f"Plan: {creates} to create, {len(changes) - creates} to update.")
    return lines


def apply_scopes(
    scope_set: ScopeSet,
    accounts: AwsAccounts | None,
    vault: VaultManager | None,
    yes: bool,
    out: Callable[[str], None],
) -> ApplyResult:
    """Print the plan; with ``yes`` and no problems, apply every change in order."""
    desired = desired_state(scope_set.scopes, scope_set.compiled)
    managers: Callable[[str], RoleManager] | None = None
    principal = None
    problems: list[str] = []
    if accounts is not None and desired.roles:
        try:
            principal = accounts.principal()
            iam_by_account: dict[str, RoleManager] = {}

            def manager(account: str) -> RoleManager:
                if account not in iam_by_account:
                    iam_by_account[account] = IamRoleManager(accounts.iam(account))
                return iam_by_account[account]

            managers = manager
        except UPSTREAM_ERRORS as e:
            problems.append(f"aws: cannot reach IAM ({failure_reason(e)})")
    try:
        changes, found = all_changes(desired, principal, managers, vault)
    except UPSTREAM_ERRORS as e:
        changes, found = [], [f"cannot read the current state ({failure_reason(e)})"]
    problems.extend(p for p in found if not (p.startswith("aws: not configured") and problems))
    for line in render_plan(changes, problems):
        out(line)
    if problems or not changes:
        return ApplyResult(tuple(changes), tuple(problems), 0)
    if not yes:
        out("Nothing was changed. Run again with --yes to apply this plan.")
        return ApplyResult(tuple(changes), (), 0)
    applied = 0
    for change in changes:
        try:
            change.apply()
        except UPSTREAM_ERRORS as e:
            problem = (
                f"{change.upstream}: {change.kind} {change.target} failed ({failure_reason(e)})"
            )
            out(f"error: {problem}; {applied} of {len(changes)} change(s) were applied")
            return ApplyResult(tuple(changes), (problem,), applied)
        applied += 1
    out(f"Applied {applied} change(s).")
    return ApplyResult(tuple(changes), (), applied)
