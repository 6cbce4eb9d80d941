"""What a tier grants, as flat human-readable facts, and the difference between two versions.

Reviewers and approvers read permissions, not JSON: "s3:PutObject on
arn:aws:s3:::payments-prod-invoices/*". Both the plan diff and the approval page use the
same flattening so they always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.policy.compiler import (
    DATABASE_PRIVILEGES,
    database_role,
    role_policy,
    vault_policy,
)
from broker.policy.iam_actions import IamDatabase
from broker.scopes.model import Approval, Environment, EscalationException, Scope, TierName
from broker.yamldoc import format_duration

TierKey = tuple[str, str, str]  # service, environment, tier


def policy_grants(policy: Mapping[str, Any] | None) -> set[str]:
    """'action on resource' for every pair an IAM policy allows (regions noted when limited)."""
    if not policy:
        return set()
    grants = set()
    for statement in policy["Statement"]:
        if statement.get("Effect") != "Allow":
            continue
        regions = statement.get("Condition", {}).get("StringEquals", {}).get("aws:RequestedRegion")
        suffix = f" in {', '.join(regions)}" if regions else ""
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                grants.add(f"{action} on {resource}{suffix}")
    return grants


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def vault_grants(hcl: str | None) -> set[str]:
    """'vault read on secret/metadata/x/*' per path block (the token's self-service aside)."""
    if not hcl:
        return set()
    grants: set[str] = set()
    path = None
    for line in hcl.splitlines():
        line = line.strip()
        if line.startswith('path "'):
            path = line.split('"')[1]
        elif line.startswith("capabilities") and path and not path.startswith("auth/token/"):
            capabilities = [
                c.strip().strip('"') for c in line.split("[", 1)[1].rstrip("]").split(",")
            ]
            grants.update(f"vault {c} on {path}" for c in capabilities)
    return grants


def database_grants(scope: Scope, env: Environment, tier: TierName) -> set[str]:
    role = database_role(scope, env, tier)
    if role is None or env.database is None:
        return set()
    grants = {
        f"database {privilege} on {obj}"
        for obj in env.database.objects
        for privilege in DATABASE_PRIVILEGES[tier]
    }
    if tier == "delete" and env.database.owner_role:
        grants.add(f"database DROP (as {env.database.owner_role}) on what that role owns")
    return grants


@dataclass(frozen=True)
class TierFacts:
    """What one tier of one environment grants and under which conditions."""

    grants: frozenset[str]
    settings: Mapping[str, str] = field(default_factory=dict)


def tier_facts(scope: Scope, env: Environment, tier: TierName, iam: IamDatabase) -> TierFacts:
    spec = scope.tiers[tier]
    grants = (
        policy_grants(role_policy(scope, env, tier, iam))
        | vault_grants(vault_policy(scope, env, tier))
        | database_grants(scope, env, tier)
    )
    settings = {"ttl": format_duration(spec.ttl_seconds)}
    if env.aws is not None:
        settings["regions"] = ", ".join(env.aws.regions)
        if tier in env.aws.roles:
            settings["role"] = env.aws.roles[tier]
    if spec.approval is not None:
        settings["approval"] = describe_approval(spec.approval)
    else:
        settings["approval"] = "none: granted at once"
    if spec.escalation_exceptions:
        settings["escalation_exceptions"] = "; ".join(
            describe_exception(e) for e in spec.escalation_exceptions
        )
    if spec.max_resources is not None:
        settings["max_resources"] = str(spec.max_resources)
    if spec.rate_limit is not None:
        settings["rate_limit"] = str(spec.rate_limit)
    if spec.vault_num_uses and env.vault is not None:
        settings["vault_num_uses"] = str(spec.vault_num_uses)
    if spec.approval is not None:
        settings["intent"] = spec.intent  # "required" or "optional"
    if spec.max_destructive is not None:
        settings["max_destructive"] = str(spec.max_destructive)
    if spec.approval is not None:
        settings["slack_approval"] = "on" if spec.approval.allow_slack_approval else "off"
        settings["pending_expiry"] = format_duration(spec.approval.pending_expiry_seconds)
        if spec.approval.channel:
            settings["channel"] = spec.approval.channel
        if spec.approval.unsafe_single_approver:
            settings["unsafe_single_approver"] = spec.approval.unsafe_single_approver
    return TierFacts(frozenset(grants), settings)


ESCALATION_MARK = "ESCALATION EXCEPTION"  # `broker scopes plan` shows such lines in red


def describe_exception(exception: EscalationException) -> str:
    """An escalation action granted on purpose, in words (shown in red)."""
    return (
        f"{ESCALATION_MARK} {exception.action}: {exception.reason} "
        f"(reviewed by {exception.reviewed_by})"
    )


def describe_approval(approval: Approval) -> str:
    """'2 distinct approvals from group sre-oncall, then a 10m delay'; several sets are
    joined by 'and', each set's approvals from people counted for no other set."""
    parts = []
    for people in approval.sets:
        who = ", ".join([*people.approvers, *(f"group {g}" for g in people.groups)])
        many = "s" if people.required != 1 else ""
        parts.append(f"{people.required} distinct approval{many} from {who}")
    text = " and ".join(parts)
    if len(parts) > 1:
        text += " (each by a different person)"
    if approval.delay_seconds:
        text += f", then a {format_duration(approval.delay_seconds)} delay"
    return text


SCOPE_WIDE = "(all)"


def scope_wide_facts(scope: Scope) -> TierFacts:
    """Who may request the scope and when it is frozen: facts of no single tier."""
    grants = set()
    for requester in scope.requesters:
        issuer = f" of issuer {requester.issuer}" if requester.issuer else ""
        if requester.subject is not None:
            grants.add(f"requester subject {requester.subject}{issuer}")
        else:
            claims = ", ".join(f"{k}={v}" for k, v in sorted(requester.claims.items()))
            grants.add(f"requester with claims {claims}{issuer}")
    settings = {}
    for freeze in scope.freezes:
        window = (
            f"{freeze.start.isoformat()} to {freeze.end.isoformat()}"
            if freeze.start and freeze.end
            else f"days {list(freeze.days)} {freeze.start_time}-{freeze.end_time}"
        )
        settings[f"freeze '{freeze.name}'"] = (
            f"{window} {freeze.timezone} ({', '.join(freeze.tiers)})"
        )
    return TierFacts(frozenset(grants), settings)


def scope_facts(scopes: Iterable[Scope], iam: IamDatabase) -> dict[TierKey, TierFacts]:
    facts: dict[TierKey, TierFacts] = {}
    for scope in scopes:
        facts[(scope.service, SCOPE_WIDE, SCOPE_WIDE)] = scope_wide_facts(scope)
        for env_name, env in sorted(scope.environments.items()):
            for tier in scope.tiers:
                facts[(scope.service, env_name, tier)] = tier_facts(scope, env, tier, iam)
    return facts


@dataclass(frozen=True)
class Change:
    key: TierKey
    kind: str  # "adds", "removes", "changes"
    text: str

    def __str__(self) -> str:
        return f"{'/'.join(self.key)}: {self.kind} {self.text}"


def diff_facts(old: Mapping[TierKey, TierFacts], new: Mapping[TierKey, TierFacts]) -> list[Change]:
    """Granted-permission and settings changes from ``old`` to ``new``, sorted."""
    changes: list[Change] = []
    for key in sorted(set(old) | set(new)):
        before = old.get(key, TierFacts(frozenset()))
        after = new.get(key, TierFacts(frozenset()))
        changes.extend(Change(key, "adds", g) for g in sorted(after.grants - before.grants))
        changes.extend(Change(key, "removes", g) for g in sorted(before.grants - after.grants))
        for setting in sorted(set(before.settings) | set(after.settings)):
            was, now = before.settings.get(setting), after.settings.get(setting)
            if (
                was == now
                or (not before.grants and not before.settings)
                or (not after.grants and not after.settings)
            ):
                continue  # a tier that appears or disappears is described by its grants
            changes.append(
                Change(key, "changes", f"{setting} from {was or 'none'} to {now or 'none'}")
            )
    return changes
