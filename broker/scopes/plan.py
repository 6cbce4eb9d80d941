"""Render what scopes grant for people (``broker scopes plan``) and how two versions differ."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from broker.errors import BrokerError
from broker.policy.compiler import compile_scope, role_policy, vault_policy
from broker.policy.grants import (
    Change,
    database_grants,
    describe_approval,
    describe_exception,
    vault_grants,
)
from broker.policy.iam_actions import IamDatabase
from broker.scopes.model import TIERS, Scope, TierName
from broker.yamldoc import format_duration

LEVEL_ORDER = ("List", "Read", "Tagging", "Write", "Permissions management")


def render_plan(scopes: Sequence[Scope], iam: IamDatabase) -> str:
    """Human terms: per environment and tier, actions grouped by access level, and settings."""
    lines: list[str] = []
    for scope in scopes:
        lines.append(f"{scope.service}  ({scope.source})")
        if scope.description:
            lines.append(f"  {scope.description}")
        for env_name in sorted(scope.environments):
            env = scope.environments[env_name]
            where = []
            if env.aws:
                where.append(f"account {env.aws.account}, regions {', '.join(env.aws.regions)}")
            if env.vault:
                where.append(f"vault kv {env.vault.mount}")
            if env.database:
                where.append(f"database {env.database.connection}")
            lines.append(f"  {env_name}: {'; '.join(where)}")
            for tier_name, tier in scope.tiers.items():
                if tier.approval is None:
                    gate = "granted at once"
                else:
                    gate = describe_approval(tier.approval)
                lines.append(f"    {tier_name}  ttl {format_duration(tier.ttl_seconds)}, {gate}")
                lines.extend(f"      {describe_exception(e)}" for e in tier.escalation_exceptions)
                limits = []
                if tier.max_resources:
                    limits.append(f"at most {tier.max_resources} resource(s) per request")
                if tier.rate_limit:
                    limits.append(f"at most {tier.rate_limit} requests")
                if tier.intent == "required":
                    limits.append("an intent is required")
                if tier.max_destructive is not None:
                    limits.append(
                        f"at most {tier.max_destructive} destructive operation(s) per intent"
                    )
                if limits:
                    lines.append(f"      {'; '.join(limits)}")
                below = _tier_below(scope, tier_name)
                if below is not None:
                    lines.append(f"      everything in {below}, and:")
                lines.extend(_aws_lines(scope, env_name, tier_name, iam))
                lines.extend(_vault_and_database_lines(scope, env_name, tier_name))
        for freeze in scope.freezes:
            tiers = ", ".join(freeze.tiers)
            if freeze.start and freeze.end:
                when = f"{freeze.start.isoformat()} to {freeze.end.isoformat()}"
            else:
                days = ", ".join(
                    ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[d] for d in freeze.days
                )
                end = freeze.end_time.strftime("%H:%M") if freeze.end_time else "24:00"
                start = freeze.start_time.strftime("%H:%M") if freeze.start_time else "00:00"
                when = f"every {days} {start}-{end}"
            lines.append(f"  freeze '{freeze.name}' ({tiers}): {when} {freeze.timezone}")
        lines.append("")
    return "\n".join(lines)


def _tier_below(scope: Scope, tier: TierName) -> TierName | None:
    """The highest tier defined below ``tier`` (tiers are cumulative)."""
    lower = [name for name in TIERS[: TIERS.index(tier)] if name in scope.tiers]
    return lower[-1] if lower else None


def _pairs(
    scope: Scope, env_name: str, tier: TierName | None, iam: IamDatabase
) -> set[tuple[str, str]]:
    if tier is None:
        return set()
    policy = role_policy(scope, scope.environments[env_name], tier, iam)
    if policy is None:
        return set()
    return {
        (action, resource)
        for statement in policy["Statement"]
        for action in statement["Action"]
        for resource in statement["Resource"]
    }


def _aws_lines(scope: Scope, env_name: str, tier: TierName, iam: IamDatabase) -> Iterator[str]:
    """The AWS grants a tier adds to the tier below it, grouped by IAM access level."""
    below = _tier_below(scope, tier)
    added = _pairs(scope, env_name, tier, iam) - _pairs(scope, env_name, below, iam)
    by_level: dict[str, dict[str, set[str]]] = {}
    for action, resource in added:
        info = iam.lookup(action)
        level = info.access_level if info else "Unknown"
        by_level.setdefault(level, {}).setdefault(resource, set()).add(action)
    for level in sorted(
        by_level, key=lambda lv: LEVEL_ORDER.index(lv) if lv in LEVEL_ORDER else 99
    ):
        yield f"      {level}:"
        for resource, actions in sorted(by_level[level].items()):
            yield f"        {', '.join(sorted(actions))} on {resource}"


def _vault_and_database_lines(scope: Scope, env_name: str, tier: TierName) -> Iterator[str]:
    """Vault and database grants a tier adds to the tier below it."""
    env = scope.environments[env_name]

    def grants(name: TierName | None) -> set[str]:
        if name is None or name not in scope.tiers:
            return set()
        return vault_grants(vault_policy(scope, env, name)) | database_grants(scope, env, name)

    below = _tier_below(scope, tier)
    for grant in sorted(grants(tier) - grants(below)):
        yield f"      {grant}"


def render_json(scopes: Sequence[Scope], iam: IamDatabase) -> str:
    """Every compiled document, deterministic: byte-identical for the same input."""
    documents = {scope.service: compile_scope(scope, iam) for scope in scopes}
    return json.dumps(documents, sort_keys=True, indent=2) + "\n"


def render_changes(changes: Sequence[Change]) -> str:
    if not changes:
        return "No changes: both versions grant exactly the same permissions.\n"
    adds = sum(1 for c in changes if c.kind == "adds")
    removes = sum(1 for c in changes if c.kind == "removes")
    other = len(changes) - adds - removes
    lines = [
        f"{'+' if c.kind == 'adds' else '-' if c.kind == 'removes' else '~'} {c}" for c in changes
    ]
    lines.append(f"\nPlan: {adds} grants added, {removes} removed, {other} settings changed.")
    return "\n".join(lines) + "\n"


@contextmanager
def checkout(against: str, scopes_path: Path) -> Iterator[Path]:
    """A directory holding the other version: a directory as given, or a git ref's files.

    For a git ref, the scope path's files at that ref are exported to a temporary directory
    with ``git archive`` (nothing in the working tree changes). A path the ref does not have
    yet (a new scope file, a new directory) yields an empty directory: at that ref, it
    granted nothing.
    """
    candidate = Path(against)
    if candidate.exists():
        yield candidate
        return
    git = shutil.which("git")
    if git is None:
        raise BrokerError(f"'{against}' is not a directory and git is not installed")
    resolved = scopes_path.resolve()
    base = resolved if resolved.is_dir() else resolved.parent
    try:
        top = subprocess.run(
            [git, "-C", str(base), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except subprocess.CalledProcessError as e:
        raise BrokerError(
            f"'{against}' is not a directory, and {base} is not in a git repository"
        ) from e
    relative = resolved.relative_to(Path(top).resolve())
    verified = subprocess.run(
        [git, "-C", top, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if verified.returncode != 0:
        raise BrokerError(f"cannot read '{relative}' at git ref '{against}': no such ref")
    listed = subprocess.run(
        [git, "-C", top, "ls-tree", "--name-only", against, "--", str(relative)],
        capture_output=True,
        text=True,
    )
    if listed.returncode == 0 and not listed.stdout.strip():
        with tempfile.TemporaryDirectory(prefix="broker-plan-") as empty:
            yield Path(empty)  # new since that ref
        return
    with tempfile.TemporaryDirectory(prefix="broker-plan-") as tmp:
        archive = Path(tmp) / "scopes.tar"
        result = subprocess.run(
            [
                git,
                "-C",
                top,
                "archive",
                "--format=tar",
                f"--output={archive}",
                against,
                "--",
                str(relative),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"cannot read '{relative}' at git ref '{against}': "
                f"{result.stderr.strip() or 'git archive failed'}"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / relative
