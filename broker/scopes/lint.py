"""Fail-closed policy rules over loaded scopes.

Each rule is a function from a loaded scope to problems, so each can be tested alone.
A scope with any problem is refused as a whole: the broker never serves a scope that
would grant more than it says on its face.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from broker.errors import Problem
from broker.policy import quorum
from broker.policy.destructive import destructive_reason, is_destructive
from broker.policy.iam_actions import READ_LEVELS, is_wildcard
from broker.policy.resources import names_everything
from broker.scopes.lint_base import ApproverDirectory as ApproverDirectory
from broker.scopes.lint_base import LintContext as LintContext
from broker.scopes.lint_base import Rule as Rule
from broker.scopes.lint_base import actions_of as _actions
from broker.scopes.lint_base import problem_at as _problem
from broker.scopes.lint_escalation import delete_delay as delete_delay
from broker.scopes.lint_escalation import escalation_actions as escalation_actions
from broker.scopes.lint_overlap import environment_overlap as environment_overlap
from broker.scopes.loader import LoadedScope
from broker.scopes.model import Approval
from broker.suggest import closest, did_you_mean

STS_MIN_SECONDS = 900
STS_MAX_SECONDS = 12 * 3600  # AssumeRole's ceiling (the role's MaxSessionDuration may be lower)
VAULT_MAX_SECONDS = 768 * 3600  # Vault's default max_lease_ttl
MIN_DELETE_APPROVALS = 2


def known_actions(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """Every action names a real IAM action (or a pattern matching at least one); a typo
    gets the closest real name."""
    for tier, s, a, action, _ in _actions(loaded):
        if action == "*":
            continue  # reported by the wildcard rule
        service, _, name = action.partition(":")
        key = ("tiers", tier, "aws", s, "actions", a)
        if not ctx.iam.has_service(service):
            hint = did_you_mean(service, ctx.iam.prefixes())
            yield _problem(
                loaded, key, "unknown-action", f"unknown AWS service prefix '{service}'{hint}"
            )
        elif not ctx.iam.expand(action):
            close = None if is_wildcard(name) else closest(name, ctx.iam.action_names(service))
            hint = f"; did you mean '{service}:{close}'?" if close else ""
            yield _problem(loaded, key, "unknown-action", f"'{action}' matches no IAM action{hint}")


def read_access_level(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """Every action of ``read``, wildcards expanded, has access level List or Read."""
    for tier, s, a, action, _ in _actions(loaded):
        if tier != "read":
            continue
        offending = [i for i in ctx.iam.expand(action) if i.access_level not in READ_LEVELS]
        if offending:
            first = offending[0]
            more = f" and {len(offending) - 1} more" if len(offending) > 1 else ""
            yield _problem(
                loaded,
                ("tiers", tier, "aws", s, "actions", a),
                "read-access-level",
                f"'{action}' in tier read grants {first.full_name} "
                f"(access level {first.access_level}){more}; read allows only List and Read",
            )


def wildcard_actions(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """No wildcard action in write or delete (and never a bare '*')."""
    for tier, s, a, action, _ in _actions(loaded):
        if action == "*" or (tier != "read" and is_wildcard(action)):
            yield _problem(
                loaded,
                ("tiers", tier, "aws", s, "actions", a),
                "wildcard-action",
                f"wildcard action '{action}' in tier {tier}: name each action",
            )


def wildcard_resources(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """No '*'-like resource in write/delete; in read only for actions taking no ARN."""
    for tier_name, tier in loaded.scope.tiers.items():
        for s_index, statement in enumerate(tier.aws):
            for r_index, resource in enumerate(statement.resources):
                if not names_everything(resource):
                    continue
                key = ("tiers", tier_name, "aws", s_index, "resources", r_index)
                if tier_name != "read":
                    yield _problem(
                        loaded,
                        key,
                        "wildcard-resource",
                        f"resource '{resource}' in tier {tier_name} names everything; "
                        "name the resources",
                    )
                    continue
                scoped = [
                    info.full_name
                    for action in statement.actions
                    for info in ctx.iam.expand(action)
                    if info.supports_resources
                ]
                if scoped:
                    yield _problem(
                        loaded,
                        key,
                        "wildcard-resource",
                        f"resource '{resource}' with {scoped[0]}, which can be limited to "
                        "named resources; '*' is only for actions that take no resource ARN",
                    )


def destructive_outside_delete(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """Destructive actions (Delete*, Terminate*, the documented list) only in ``delete``.

    A wildcard is reported once, with how many destructive actions it covers and the first
    few by name, not as one arbitrary action it happens to expand to first.
    """
    for tier, s, a, action, _ in _actions(loaded):
        if tier == "delete":
            continue
        found = [i for i in ctx.iam.expand(action) if is_destructive(i.service, i.name)]
        if not found:
            continue
        key = ("tiers", tier, "aws", s, "actions", a)
        if not is_wildcard(action):
            info = found[0]
            reason = destructive_reason(info.service, info.name)
            message = f"{info.full_name} is destructive ({reason}); it belongs in tier delete"
        else:
            names = sorted(i.full_name for i in found)
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            message = (
                f"'{action}' covers {len(names)} destructive action(s) ({shown}); "
                "they belong in tier delete"
            )
        yield _problem(loaded, key, "destructive-outside-delete", message)


def ttl_bounds(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """TTLs between STS's 900 s minimum and what STS (12 h) and Vault allow."""
    maximum = min(STS_MAX_SECONDS, VAULT_MAX_SECONDS)
    for name, tier in loaded.scope.tiers.items():
        if not STS_MIN_SECONDS <= tier.ttl_seconds <= maximum:
            yield _problem(
                loaded,
                ("tiers", name, "ttl"),
                "ttl-bounds",
                f"tier {name} ttl {tier.ttl_seconds}s is outside {STS_MIN_SECONDS}s..{maximum}s "
                "(STS AssumeRole allows 15 minutes to 12 hours)",
            )


def delete_approvals(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """``delete`` needs 2 or more distinct approvers unless the scope visibly opts out."""
    tier = loaded.scope.tiers.get("delete")
    if tier is None or tier.approval is None:
        return
    required = tier.approval.total_required
    if required < MIN_DELETE_APPROVALS and not tier.approval.unsafe_single_approver:
        yield _problem(
            loaded,
            ("tiers", "delete", "approval", "all_of" if tier.approval.all_of else "required"),
            "delete-approvals",
            f"tier delete requires {required} approval; at least "
            f"{MIN_DELETE_APPROVALS} distinct approvers are required unless "
            "'unsafe_single_approver: <reason>' says why not",
        )


def destructive_cap_needs_intent(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """``max_destructive`` only with ``intent: required``: a cap an agent escapes by sending
    no intent (a plain delete request) caps nothing."""
    for name, tier in loaded.scope.tiers.items():
        if tier.max_destructive is not None and tier.intent != "required":
            yield _problem(
                loaded,
                ("tiers", name, "max_destructive"),
                "destructive-cap-needs-intent",
                f"tier {name} caps destructive operations per intent, but a request without "
                "an intent is not counted; add 'intent: required' to the tier",
            )


def _set_keys(approval: Approval, name: str, index: int) -> tuple[object, ...]:
    """Where a set of an approval rule was written (the block itself for the simple form)."""
    if approval.all_of:
        return ("tiers", name, "approval", "all_of", index)
    return ("tiers", name, "approval")


def approvals_satisfiable(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """Approvers and groups exist in the broker config, enough of them (given a config):
    every set of the rule can be met at once, each approval by a different person."""
    if ctx.directory is None:
        return
    for name, tier in loaded.scope.tiers.items():
        if tier.approval is None:
            continue
        for index, people in enumerate(tier.approval.sets):
            at = _set_keys(tier.approval, name, index)
            for a_index, approver in enumerate(people.approvers):
                if not ctx.directory.has_approver(approver):
                    yield _problem(
                        loaded,
                        (*at, "approvers", a_index if tier.approval.all_of else approver),
                        "unknown-approver",
                        f"approver '{approver}' is not defined in the broker config",
                    )
            for g_index, group in enumerate(people.groups):
                if not ctx.directory.has_group(group):
                    yield _problem(
                        loaded,
                        (*at, "groups", g_index if tier.approval.all_of else group),
                        "unknown-group",
                        f"group '{group}' is not defined in the broker config",
                    )
        sets = quorum.resolve(tier.approval, ctx.directory.approvers_for)
        everyone = frozenset().union(*(s.members for s in sets))
        if not tier.approval.all_of and len(everyone) < tier.approval.required:
            yield _problem(
                loaded,
                ("tiers", name, "approval"),
                "unsatisfiable-approval",
                f"tier {name} requires {tier.approval.required} distinct approvals but only "
                f"{len(everyone)} approver(s) are eligible",
            )
        elif not quorum.met(sets, everyone):
            short = "; ".join(quorum.missing(sets, everyone))
            yield _problem(
                loaded,
                ("tiers", name, "approval", "all_of"),
                "unsatisfiable-approval",
                f"tier {name} requires {tier.approval.describe_sets()}, each approval by a "
                f"different person, which the people eligible cannot meet (short: {short})",
            )


def requester_issuers(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """A requester's issuer is configured (given a config): otherwise it matches nobody."""
    if ctx.directory is None:
        return
    for index, requester in enumerate(loaded.scope.requesters):
        if requester.issuer is not None and not ctx.directory.has_issuer(requester.issuer):
            yield _problem(
                loaded,
                ("requesters", index, "issuer"),
                "unknown-issuer",
                f"issuer '{requester.issuer}' is not configured in the broker config "
                "(identity.oidc names, or local)",
            )


def backends_complete(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """Each tier has a role (and database role) in every environment that uses that backend."""
    scope = loaded.scope
    for env in scope.environments.values():
        env_key = ("environments", env.name)
        if env.aws is not None:
            for tier_name in scope.tiers:
                if tier_name not in env.aws.roles:
                    yield _problem(
                        loaded,
                        env_key,
                        "missing-role",
                        f"environment {env.name} has no aws role for tier {tier_name}",
                    )
            for tier_name, arn in env.aws.roles.items():
                account = arn.split(":")[4]
                if account not in ("${account}", env.aws.account):
                    yield _problem(
                        loaded,
                        env_key,
                        "role-account",
                        f"environment {env.name}: role for {tier_name} is in account {account}, "
                        f"not {env.aws.account}",
                    )
                if tier_name not in scope.tiers:
                    yield _problem(
                        loaded,
                        env_key,
                        "missing-role",
                        f"environment {env.name} has a role for tier {tier_name}, "
                        "which the scope does not define",
                    )
        if env.database is not None:
            for tier_name in scope.tiers:
                if tier_name not in env.database.roles:
                    yield _problem(
                        loaded,
                        env_key,
                        "missing-role",
                        f"environment {env.name} has no database role for tier {tier_name}",
                    )
            for tier_name in env.database.roles:
                if tier_name not in scope.tiers:
                    yield _problem(
                        loaded,
                        env_key,
                        "missing-role",
                        f"environment {env.name} has a database role for tier {tier_name}, "
                        "which the scope does not define",
                    )
    has_aws_statements = any(tier.aws for tier in scope.tiers.values())
    if has_aws_statements and not any(e.aws for e in scope.environments.values()):
        yield _problem(
            loaded,
            ("tiers",),
            "missing-role",
            "tiers grant AWS actions but no environment configures aws",
        )


RULES: tuple[Rule, ...] = (
    known_actions,
    read_access_level,
    wildcard_actions,
    wildcard_resources,
    destructive_outside_delete,
    escalation_actions,
    environment_overlap,
    ttl_bounds,
    delete_approvals,
    destructive_cap_needs_intent,
    delete_delay,
    approvals_satisfiable,
    requester_issuers,
    backends_complete,
)


def lint(loaded: LoadedScope, ctx: LintContext, rules: Iterable[Rule] = RULES) -> list[Problem]:
    """All problems of one scope, in file order."""
    problems = [problem for rule in rules for problem in rule(loaded, ctx)]
    return sorted(set(problems), key=lambda p: (p.path, p.line, p.column, p.reason))
