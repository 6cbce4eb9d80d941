"""The intent: what the agent says it will do, as frozen values with one canonical form.

An intent is exactly one of three things the agent sends: a list of operations written by
hand, a Terraform plan, or a CloudFormation change set. Whatever its source, the broker
reduces it to ``operations`` (exactly what the credential may do, nothing more) and, for
plans and change sets, ``changes`` (one entry per resource, for approvers). The canonical
form keeps only those reductions, never the plan's attribute values (``terraform show
-json`` prints sensitive values in clear text), and its SHA-256 is what an approval binds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from broker.scopes.model import Backend

IntentKind = Literal["operations", "terraform_plan", "cloudformation_change_set"]
INTENT_KINDS: tuple[IntentKind, ...] = ("operations", "terraform_plan", "cloudformation_change_set")
CANONICAL_VERSION = 1


@dataclass(frozen=True, order=True)
class AwsOperation:
    """One IAM action on one resource ARN (a wildcard only where the intent wrote one)."""

    action: str
    resource: str
    # Extra StringEquals conditions, e.g. cloudformation:ChangeSetName for ExecuteChangeSet.
    conditions: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"action": self.action, "resource": self.resource}
        if self.conditions:
            result["conditions"] = dict(self.conditions)
        return result

    def __str__(self) -> str:
        text = f"{self.action} on {self.resource}"
        for key, value in self.conditions:
            text += f" when {key} is {value}"
        return text


@dataclass(frozen=True, order=True)
class VaultOperation:
    """Vault ACL capabilities on one exact path (mount included, e.g. secret/data/x)."""

    path: str
    capabilities: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "capabilities": list(self.capabilities)}

    def __str__(self) -> str:
        return f"vault {', '.join(self.capabilities)} on {self.path}"


@dataclass(frozen=True, order=True)
class DatabaseOperation:
    """PostgreSQL table privileges on one ``schema.table``."""

    table: str
    privileges: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"object": self.table, "privileges": list(self.privileges)}

    def __str__(self) -> str:
        return f"database {', '.join(self.privileges)} on {self.table}"


Operation = AwsOperation | VaultOperation | DatabaseOperation


@dataclass(frozen=True)
class Change:
    """One resource a plan or change set changes, as an approver reads it.

    ``actions`` use Terraform's words (create, update, delete, read, no-op, forget,
    import); a replacement is ``("delete", "create")`` or ``("create", "delete")``.
    ``executed_by`` says whose credential performs it: the agent's (a Terraform apply) or
    the stack's service role (a change set executed by CloudFormation).
    """

    address: str
    resource_type: str
    actions: tuple[str, ...]
    identifier: str = ""
    conditional: bool = False
    executed_by: Literal["agent", "cloudformation"] = "agent"
    operations: tuple[AwsOperation, ...] = ()

    @property
    def replacement(self) -> bool:
        return "delete" in self.actions and "create" in self.actions

    @property
    def deletion(self) -> bool:
        return "delete" in self.actions

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "address": self.address,
            "type": self.resource_type,
            "actions": list(self.actions),
        }
        if self.identifier:
            result["identifier"] = self.identifier
        if self.conditional:
            result["conditional"] = True
        if self.executed_by != "agent":
            result["executed_by"] = self.executed_by
        result["operations"] = [op.as_dict() for op in self.operations]
        return result


@dataclass(frozen=True)
class Intent:
    """A parsed, validated intent; ``operations`` are sorted and unique."""

    kind: IntentKind
    backend: Backend
    operations: tuple[Operation, ...]
    changes: tuple[Change, ...] = ()
    # Where it came from: Terraform's format and version, or the stack and change set ids.
    source: tuple[tuple[str, str], ...] = field(default=())

    def canonical(self) -> dict[str, Any]:
        """The value the hash covers: everything granted and shown, no attribute values."""
        document: dict[str, Any] = {
            "version": CANONICAL_VERSION,
            "kind": self.kind,
            "backend": self.backend,
            "operations": [op.as_dict() for op in self.operations],
        }
        if self.changes:
            document["changes"] = [change.as_dict() for change in self.changes]
        if self.source:
            document["source"] = dict(self.source)
        return document

    @cached_property
    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, ASCII only: the same intent always gives the same bytes."""
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json.encode("ascii")).hexdigest()

    def source_value(self, key: str) -> str | None:
        return dict(self.source).get(key)


@dataclass(frozen=True)
class AwsTarget:
    """Where a plan's resources live: the ARNs the broker builds name this account and region."""

    account: str
    region: str
    partition: str = "aws"
