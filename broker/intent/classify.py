"""What an intent destroys, what it replaces, and its one-line summary for the API.

The broker's rule on top of IAM's access levels (which call DeleteTable plain "Write"):
an AWS operation destroys when :mod:`broker.policy.destructive` says so; a Vault operation
when it deletes or destroys secret versions; a database operation when it deletes rows or
empties a table; a change CloudFormation executes when it removes or replaces a resource.
A replacement (Terraform's delete-and-create, a change set's Replacement True or
Conditional) is named on its own, first, because it is the incident this project exists
for: "REPLACES aws_dynamodb_table.ledger: its data will be lost".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.intent.mappings import BY_CLOUDFORMATION, BY_TERRAFORM
from broker.intent.model import (
    AwsOperation,
    Change,
    DatabaseOperation,
    Intent,
    Operation,
    VaultOperation,
)
from broker.policy.destructive import destructive_reason, is_destructive
from broker.scopes.model import VaultKv

DESTRUCTIVE_PRIVILEGES = {"DELETE": "deletes rows", "TRUNCATE": "empties the table"}
DEFAULT_LOSS = "it will be deleted and created again"


@dataclass(frozen=True)
class Destruction:
    """One destructive thing the intent does, and why it counts as one."""

    subject: str
    reason: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}"


@dataclass(frozen=True)
class Replacement:
    address: str
    resource_type: str
    conditional: bool
    text: str


@dataclass(frozen=True)
class IntentSummary:
    """The API answer's ``intent``: {sha256, operations, destructive, replacements}."""

    sha256: str
    operations: int
    destructive: int
    replacements: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "operations": self.operations,
            "destructive": self.destructive,
            "replacements": list(self.replacements),
        }


def operation_destroys(op: Operation, kv: VaultKv | None = None) -> str | None:
    """Why an operation is destructive, or None when it is not."""
    if isinstance(op, AwsOperation):
        service, action = op.action.split(":", 1)
        return destructive_reason(service, action) if is_destructive(service, action) else None
    if isinstance(op, DatabaseOperation):
        reasons = [DESTRUCTIVE_PRIVILEGES[p] for p in op.privileges if p in DESTRUCTIVE_PRIVILEGES]
        return " and ".join(reasons) or None
    return _vault_destroys(op, kv)


def _vault_destroys(op: VaultOperation, kv: VaultKv | None) -> str | None:
    if "delete" in op.capabilities:
        return "deletes the secret"
    if kv is not None and kv.version == 2 and "update" in op.capabilities:
        # KV v2: updating delete/ or destroy/ paths deletes or destroys versions.
        for prefix in ("delete", "destroy"):
            if op.path.startswith(f"{kv.mount}/{prefix}/"):
                return f"{prefix}s secret versions"
    return None


def change_destroys(change: Change) -> str | None:
    """Why a change CloudFormation executes destroys something (Terraform's are operations)."""
    if change.executed_by != "cloudformation" or not change.deletion:
        return None
    if change.replacement:
        return "replaced: " + _loss(change)
    return "removed: " + _loss(change)


def destructions(intent: Intent, kv: VaultKv | None = None) -> tuple[Destruction, ...]:
    found = [
        Destruction(str(op), reason)
        for op in intent.operations
        if (reason := operation_destroys(op, kv)) is not None
    ]
    found += [
        Destruction(f"{change.address} ({change.resource_type})", reason)
        for change in intent.changes
        if (reason := change_destroys(change)) is not None
    ]
    return tuple(found)


CONDITIONAL = " (if CloudFormation must; it decides during execution)"


def replacements(intent: Intent) -> tuple[Replacement, ...]:
    return tuple(
        Replacement(
            change.address,
            change.resource_type,
            change.conditional,
            f"REPLACES {change.address}{CONDITIONAL if change.conditional else ''}: "
            + _loss(change),
        )
        for change in intent.changes
        if change.replacement
    )


def _loss(change: Change) -> str:
    rtype = BY_TERRAFORM.get(change.resource_type) or BY_CLOUDFORMATION.get(change.resource_type)
    return rtype.loss if rtype is not None else DEFAULT_LOSS


def summarize(intent: Intent, kv: VaultKv | None = None) -> IntentSummary:
    return IntentSummary(
        sha256=intent.sha256,
        operations=len(intent.operations),
        destructive=len(destructions(intent, kv)),
        replacements=tuple(r.address for r in replacements(intent)),
    )


_VERBS = {"create": "CREATES", "update": "UPDATES", "import": "IMPORTS", "read": "READS"}


def describe(intent: Intent, kv: VaultKv | None = None) -> list[str]:
    """Lines for an approver, most dangerous first: replacements, deletions, other changes,
    destructive operations, then every other operation as granted."""
    lines = [r.text for r in replacements(intent)]
    for change in intent.changes:
        if change.deletion and not change.replacement:
            lines.append(f"DELETES {change.address}: {_loss(change)}")
    for change in intent.changes:
        if change.deletion:
            continue
        if "forget" in change.actions:
            lines.append(f"FORGETS {change.address}: it stays, no longer managed")
        verbs = [_VERBS[a] for a in change.actions if a in _VERBS]
        if verbs:
            lines.append(f"{' and '.join(verbs)} {change.address} ({change.resource_type})")
    destructive = {str(op) for op in intent.operations if operation_destroys(op, kv)}
    lines += [f"destroys: {op}" for op in sorted(destructive)]
    lines += [str(op) for op in intent.operations if str(op) not in destructive]
    return lines
