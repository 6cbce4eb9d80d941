"""Does every operation of an intent lie within the scope, and which tier's rule applies?

Pure. Each operation must be granted by a tier of the scope in the request's environment
and region, exactly as the compiler would grant it (same pattern matching, same
placeholders); each one outside is returned, named, for a 400 ``intent_outside_scope``.
The tier follows from the intent, not from what the agent asked: an operation needs at
least the tier that grants it, ``write`` when it changes anything, and ``delete`` when it
destroys (the broker's rule, :mod:`broker.intent.classify`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from broker.intent.arns import arn_account, arn_region
from broker.intent.classify import change_destroys, operation_destroys
from broker.intent.errors import IntentOutsideScope
from broker.intent.model import (
    AwsOperation,
    DatabaseOperation,
    Intent,
    Operation,
    VaultOperation,
)
from broker.policy.compiler import DATABASE_PRIVILEGES, KV1_CAPABILITIES, KV2_CAPABILITIES
from broker.policy.globs import covers, substitute
from broker.policy.iam_actions import READ_LEVELS, IamDatabase
from broker.policy.resources import names_everything, vault_path_regex
from broker.scopes.model import TIERS, Environment, Scope, TierName


@dataclass(frozen=True)
class Outside:
    """An operation the scope does not allow, and why."""

    operation: Operation
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {**self.operation.as_dict(), "reason": self.reason}


@dataclass(frozen=True)
class ScopeCheck:
    """The decision: the tier whose approval rule applies, or the operations outside."""

    tier: TierName | None
    outside: tuple[Outside, ...]
    # Why the tier is what it is: each operation's own minimum, for the approval page.
    needs: tuple[tuple[Operation, TierName], ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.outside and self.tier is not None

    def raise_if_outside(self) -> TierName:
        """The tier, or :class:`IntentOutsideScope` (400) naming every operation outside."""
        if self.outside or self.tier is None:
            shown = "; ".join(f"{o.operation}: {o.reason}" for o in self.outside[:5])
            more = f" (and {len(self.outside) - 5} more)" if len(self.outside) > 5 else ""
            raise IntentOutsideScope(
                f"{len(self.outside)} operation(s) of the intent lie outside the scope: "
                f"{shown}{more}",
                [o.as_dict() for o in self.outside],
            )
        return self.tier


@dataclass(frozen=True)
class _Why:
    """Why an operation is outside (kept apart from tier names, which are strings too)."""

    reason: str


def check_scope(
    intent: Intent, scope: Scope, env: Environment, region: str | None, iam: IamDatabase
) -> ScopeCheck:
    """Check every operation; the tier is the highest any operation (or change) needs."""
    outside: list[Outside] = []
    needs: list[tuple[Operation, TierName]] = []
    for op in intent.operations:
        if isinstance(op, AwsOperation):
            result = _aws(op, scope, env, region, iam)
        elif isinstance(op, VaultOperation):
            result = _vault(op, scope, env, region)
        else:
            result = _database(op, scope, env)
        if isinstance(result, _Why):
            outside.append(Outside(op, result.reason))
        else:
            needs.append((op, result))
    tier = _highest(tier for _, tier in needs)
    if any(change_destroys(change) for change in intent.changes):
        # A change set's removals and replacements are done by CloudFormation, but it is
        # this intent that has them done: they need the delete rule all the same.
        tier = "delete"
        if "delete" not in scope.tiers:
            outside += [
                Outside(
                    op,
                    f"the change set destroys resources, which needs the delete tier; "
                    f"scope {scope.service} has none",
                )
                for op in intent.operations
            ]
    if outside:
        return ScopeCheck(None, tuple(outside), tuple(needs))
    return ScopeCheck(tier, (), tuple(needs))


def _highest(tiers: Iterable[TierName]) -> TierName:
    return max(tiers, key=TIERS.index, default="read")


def _available(tier: TierName, scope: Scope, defined: Iterable[str]) -> TierName | _Why:
    """The tier when the scope has it for this backend, else why not."""
    if tier not in scope.tiers or tier not in defined:
        return _Why(f"needs tier {tier}, which scope {scope.service} does not define here")
    return tier


def _aws(
    op: AwsOperation, scope: Scope, env: Environment, region: str | None, iam: IamDatabase
) -> TierName | _Why:
    if env.aws is None or region is None:
        return _Why(f"environment {env.name} of {scope.service} has no aws backend")
    found = arn_region(op.resource)
    if found not in ("", region):
        return _Why(f"is in region {found}; this request is for {region}")
    account = arn_account(op.resource)
    if account not in ("", env.aws.account):
        return _Why(f"is in account {account}; environment {env.name} is account {env.aws.account}")
    granted = _granting_tier(op, scope, env, region, iam)
    if granted is None:
        return _Why(f"no tier of scope {scope.service} grants it in {env.name}/{region}")
    info = iam.lookup(op.action)
    level: TierName = "read" if info is not None and info.access_level in READ_LEVELS else "write"
    if operation_destroys(op):
        level = "delete"
    tier = _highest((granted, level))
    if tier != "read" and names_everything(op.resource):
        return _Why(f"names every resource of its kind; a {tier} intent names what it changes")
    return _available(tier, scope, env.aws.roles)


def _granting_tier(
    op: AwsOperation, scope: Scope, env: Environment, region: str, iam: IamDatabase
) -> TierName | None:
    values = env.placeholders(region)
    wanted = op.action.lower()
    for tier in TIERS:
        if tier not in scope.tiers:
            continue
        for statement in scope.tiers[tier].aws:
            actions = {info.full_name.lower() for a in statement.actions for info in iam.expand(a)}
            if wanted not in actions:
                continue
            if any(covers(substitute(p, values), op.resource) for p in statement.resources):
                return tier
    return None


def _vault(
    op: VaultOperation, scope: Scope, env: Environment, region: str | None
) -> TierName | _Why:
    kv = env.vault
    if kv is None:
        return _Why(f"environment {env.name} of {scope.service} has no vault backend")
    if not op.path.startswith(f"{kv.mount}/"):
        return _Why(f"is not under the environment's KV mount {kv.mount}/")
    rest = op.path[len(kv.mount) + 1 :]
    table: dict[TierName, tuple[str, ...]]
    if kv.version == 2:
        prefix, _, secret = rest.partition("/")
        table = {t: KV2_CAPABILITIES[t].get(prefix, ()) for t in TIERS}
    else:
        secret, table = rest, dict(KV1_CAPABILITIES)
    if not any(_vault_pattern(p, env, region).fullmatch(secret) for p in kv.paths):
        return _Why("is outside the environment's Vault paths")
    tiers = []
    for capability in op.capabilities:
        tier = next((t for t in TIERS if capability in table[t]), None)
        if tier is None:
            return _Why(f"no tier grants {capability} on it")
        tiers.append(tier)
    tier = _highest(tiers)
    if tier != "read" and re.search(r"(^|/)\+(/|$)|\*$", op.path):
        return _Why(f"is a wildcard: a {tier} intent names each secret it changes")
    return _available(tier, scope, scope.tiers)


def _vault_pattern(pattern: str, env: Environment, region: str | None) -> re.Pattern[str]:
    try:
        return vault_path_regex(substitute(pattern, env.placeholders(region)))
    except KeyError:  # a ${region} path with no region in the request matches nothing
        return re.compile(r"(?!)")


def _database(op: DatabaseOperation, scope: Scope, env: Environment) -> TierName | _Why:
    database = env.database
    if database is None:
        return _Why(f"environment {env.name} of {scope.service} has no database backend")
    schema = op.table.split(".", 1)[0]
    if op.table not in database.objects and f"{schema}.*" not in database.objects:
        return _Why("is not one of the environment's database objects")
    tiers = [next(t for t in TIERS if p in DATABASE_PRIVILEGES[t]) for p in op.privileges]
    tier = _highest(tiers)
    if tier != "read" and op.table.endswith(".*"):
        return _Why(f"names every table of its schema; a {tier} intent names each table")
    return _available(tier, scope, database.roles)
