"""A Terraform plan to operations: each resource change to IAM actions on exact ARNs.

The credential is meant for ``terraform apply`` of the saved plan the JSON was shown from
(applying a saved plan does not refresh, so only the changed resources are touched).
Every resource change maps through :mod:`broker.intent.mappings`; a type, provider or
attribute without a mapping is refused by name, never answered with a wildcard. Names
that are unknown until apply are resolved through the configuration's references to
other resources of the same plan, or refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.intent.catalog import Related, ResourceType
from broker.intent.errors import InvalidIntent, UnsupportedResourceType
from broker.intent.fields import Field
from broker.intent.mappings import BY_TERRAFORM
from broker.intent.model import AwsOperation, AwsTarget, Change
from broker.intent.names import check_name, reference_parts
from broker.intent.plan_model import (
    FORMAT_VERSION_FOLLOWED,
    MAX_RESOURCE_CHANGES,
    Configuration,
    PlannedChange,
    contains_true,
    read_resource_change,
)

AWS_PROVIDERS = frozenset(
    {"registry.terraform.io/hashicorp/aws", "registry.opentofu.org/hashicorp/aws"}
)
# Providers whose resources never call AWS: their changes need no credential.
LOCAL_PROVIDERS = frozenset(
    {"terraform.io/builtin/terraform"}
    | {
        f"registry.{registry}/hashicorp/{name}"
        for registry in ("terraform.io", "opentofu.org")
        for name in ("random", "null", "time", "tls", "local", "archive")
    }
)
MAX_REFERENCE_HOPS = 4

PlanResult = tuple[tuple[AwsOperation, ...], tuple[Change, ...], tuple[tuple[str, str], ...]]


def parse_terraform_plan(field: Field, target: AwsTarget) -> PlanResult:
    """Operations, changes and source facts of a ``terraform show -json`` plan."""
    version_field = field.require("format_version")
    version = version_field.text(16)
    if version.split(".", 1)[0] != "1":
        raise version_field.fail(
            f"is {version}: the broker reads Terraform's JSON format 1.x "
            f"(following {FORMAT_VERSION_FOLLOWED})"
        )
    if field.get("errored").boolean(False):
        raise field.fail("is the plan of a failed terraform plan (errored is true)")
    if not field.get("applyable").boolean(True):
        raise field.fail("cannot be applied (applyable is false)")
    changes_field = field.get("resource_changes")
    entries = changes_field.items(MAX_RESOURCE_CHANGES) if changes_field.present else iter(())
    planned = [read_resource_change(entry) for entry in entries]
    mapper = _Mapper(planned, Configuration(field.get("configuration")), target)
    changes = [change for pc in planned if (change := mapper.change(pc)) is not None]
    operations = sorted({op for change in changes for op in change.operations})
    if not operations:
        raise field.fail("changes no AWS resource: there is nothing to grant")
    source = [("format_version", version)]
    terraform_version = field.get("terraform_version").optional_text(64)
    if terraform_version:
        source.append(("terraform_version", terraform_version))
    return tuple(operations), tuple(changes), tuple(source)


class _Mapper:
    def __init__(
        self, planned: list[PlannedChange], config: Configuration, target: AwsTarget
    ) -> None:
        self.by_address = {pc.address: pc for pc in planned if pc.deposed is None}
        self.config = config
        self.target = target

    # -- one resource change ---------------------------------------------------------------

    def change(self, pc: PlannedChange) -> Change | None:
        if pc.mode == "data":
            if "read" in pc.actions:
                raise InvalidIntent(
                    f"{pc.address} is a data source read during apply (its arguments are "
                    "unknown until then); intents grant no reads of data sources: apply "
                    "what it depends on first",
                    pc.field.path,
                )
            return None
        if pc.provider not in AWS_PROVIDERS:
            if pc.provider in LOCAL_PROVIDERS:
                return None if pc.actions == ("no-op",) else _change(pc, None, "", ())
            raise UnsupportedResourceType(
                f"{pc.address} belongs to provider {pc.provider}, which intents do not map",
                f"{pc.field.path}.provider_name",
                pc.type,
                pc.address,
            )
        rtype = BY_TERRAFORM.get(pc.type)
        if rtype is None:
            raise UnsupportedResourceType(
                f"{pc.address}: resource type {pc.type} is not one intents map "
                f"(supported: {', '.join(sorted(BY_TERRAFORM))})",
                f"{pc.field.path}.type",
                pc.type,
                pc.address,
            )
        if pc.actions == ("no-op",) and not pc.importing:
            return None
        self._check_region(pc)
        ops: list[AwsOperation] = []
        identifier = ""
        if "delete" in pc.actions:
            identifier = self._arn(pc, rtype, "before")
            ops += _on(rtype.delete, identifier)
            ops += self._related(pc, rtype, "delete", "before", set())
        if "create" in pc.actions:
            identifier = self._arn(pc, rtype, "after")
            ops += self._create(pc, rtype, identifier)
        if "update" in pc.actions:
            identifier = self._arn(pc, rtype, "before")
            ops += self._update(pc, rtype, identifier)
        if pc.importing:
            identifier = identifier or self._arn(pc, rtype, "after")
            ops += _on(rtype.read, identifier)
        return _change(pc, rtype, identifier, ops)

    def _create(self, pc: PlannedChange, rtype: ResourceType, arn: str) -> list[AwsOperation]:
        self._check_required(pc, rtype)
        for attribute, reason in rtype.refused.items():
            if self._asks(pc, attribute):
                raise _refused(pc, attribute, reason)
        actions = list(rtype.create) + list(rtype.read)
        for attribute, listed in rtype.create_attributes.items():
            if self._asks(pc, attribute):
                actions += listed
        return _on(actions, arn) + self._related(pc, rtype, "create", "after", set())

    def _asks(self, pc: PlannedChange, attribute: str) -> bool:
        """Does the new object set ``attribute``? An unknown value counts when the
        configuration sets it; otherwise AWS computes it and the request never carries it."""
        if _is_set(pc.after.get(attribute)):
            return True
        unknown = contains_true(pc.after_unknown.get(attribute))
        return unknown and self.config.expression(pc, attribute) is not None

    def _update(self, pc: PlannedChange, rtype: ResourceType, arn: str) -> list[AwsOperation]:
        self._check_required(pc, rtype)
        changed = _changed_attributes(pc) - rtype.state_only
        actions = list(rtype.read)
        for attribute in sorted(changed):
            if attribute in rtype.refused:
                raise _refused(pc, attribute, rtype.refused[attribute])
            unset = attribute in rtype.unset_attributes and not _is_set(pc.after.get(attribute))
            if unset and not contains_true(pc.after_unknown.get(attribute)):
                actions += rtype.unset_attributes[attribute]
            elif attribute in rtype.update_attributes:
                actions += rtype.update_attributes[attribute]
            elif rtype.update is None:
                raise _refused(
                    pc,
                    attribute,
                    f"changes to it are not mapped for {rtype.terraform} (since provider v4 "
                    "such settings have resources of their own)",
                )
            else:
                actions += rtype.update
        return _on(actions, arn) + self._related(pc, rtype, "update", "after", changed)

    def _related(
        self,
        pc: PlannedChange,
        rtype: ResourceType,
        kind: str,
        side: str,
        changed: set[str],
    ) -> list[AwsOperation]:
        ops: list[AwsOperation] = []
        for related in rtype.related:
            if kind not in related.on or (
                kind == "update" and not changed & set(related.attributes)
            ):
                continue
            values = self._related_values(pc, related, side)
            try:
                arns = related.arns(values, self.target)
            except ValueError as e:
                raise _refused(pc, related.attributes[0], str(e)) from None
            ops += [AwsOperation(action, arn) for arn in arns for action in related.actions]
        return ops

    def _related_values(self, pc: PlannedChange, related: Related, side: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for attribute in related.attributes:
            known, value = self._value(pc, side, attribute, 0)
            if not known:
                if self.config.expression(pc, attribute) is None:
                    continue  # computed by AWS, never sent: nothing to grant on it
                raise _refused(
                    pc,
                    attribute,
                    "is not known until apply and names no resource of this plan the broker "
                    "can resolve; apply what it depends on first (terraform apply -target)",
                )
            for text in _strings_in(value):
                problem = check_name(text)
                if problem:
                    raise _refused(pc, attribute, problem)
            values[attribute] = value
        return values

    # -- names -----------------------------------------------------------------------------

    def _arn(self, pc: PlannedChange, rtype: ResourceType, side: str) -> str:
        identity: dict[str, str] = {}
        for attribute in rtype.identity + rtype.optional_identity:
            required = attribute in rtype.identity
            known, value = self._value(pc, side, attribute, 0)
            if not known or value is None:
                if not required:
                    continue
                raise _refused(
                    pc,
                    attribute,
                    "is not known until apply (a generated name or a name_prefix?): the broker "
                    "grants only on names it knows; set the name in the configuration",
                )
            if not isinstance(value, str):
                raise _refused(pc, attribute, "must be a string")
            problem = check_name(value)
            if problem:
                raise _refused(pc, attribute, problem)
            sensitive = pc.before_sensitive if side == "before" else pc.after_sensitive
            if contains_true(sensitive.get(attribute)):
                raise _refused(
                    pc,
                    attribute,
                    "is marked sensitive: resource names are shown to approvers and kept in "
                    "the audit, so they must not be secrets",
                )
            identity[attribute] = value
        arn = rtype.arn(identity, self.target)
        claimed = (pc.before if side == "before" else pc.after).get("arn")
        if isinstance(claimed, str) and claimed and "*" not in arn and claimed != arn:
            raise _refused(
                pc,
                "arn",
                f"is {claimed}, but this request is for account {self.target.account} in "
                f"{self.target.region}, where it would be {arn}",
            )
        return arn

    def _value(self, pc: PlannedChange, side: str, attribute: str, hops: int) -> tuple[bool, Any]:
        """(known, value) of an attribute; an unknown one resolved through a reference."""
        if side == "before":
            return True, pc.before.get(attribute)
        if not contains_true(pc.after_unknown.get(attribute)):
            return True, pc.after.get(attribute)
        if hops >= MAX_REFERENCE_HOPS:
            return False, None
        references = self.config.references(pc, attribute)
        parsed = [parts for ref in references if (parts := reference_parts(ref))]
        resources = {parts[0].split("[", 1)[0] for parts in parsed}
        if len(resources) != 1:
            return False, None  # no reference, or several: not one value the broker can name
        for address, type_name, exported in parsed:
            if exported is not None:
                return self._exported(pc, address, type_name, exported, hops + 1)
        return False, None

    def _exported(
        self, pc: PlannedChange, address: str, rtype_name: str, attribute: str, hops: int
    ) -> tuple[bool, Any]:
        """An attribute another resource of the plan will have, computed from its identity."""
        prefix = f"{pc.module_address}." if pc.module_address else ""
        other = self.by_address.get(prefix + address)
        rtype = BY_TERRAFORM.get(rtype_name)
        if other is None or rtype is None or other.provider not in AWS_PROVIDERS:
            return False, None
        export = rtype.exports.get(attribute)
        if export is None:
            return False, None
        if export != "arn":
            return self._value(other, "after", export, hops)
        identity: dict[str, str] = {}
        for name in rtype.identity + rtype.optional_identity:
            known, value = self._value(other, "after", name, hops)
            if known and isinstance(value, str):
                identity[name] = value
            elif name in rtype.identity:
                return False, None
        return True, rtype.arn(identity, self.target)

    # -- checks ----------------------------------------------------------------------------

    def _check_region(self, pc: PlannedChange) -> None:
        regions = {self.config.provider_region(pc), pc.after.get("region"), pc.before.get("region")}
        for region in regions - {None, ""}:
            if region != self.target.region:
                raise InvalidIntent(
                    f"{pc.address} is in region {region}, but this request is for "
                    f"{self.target.region}: request each region separately",
                    pc.field.path,
                )

    def _check_required(self, pc: PlannedChange, rtype: ResourceType) -> None:
        for attribute, reason in rtype.required.items():
            if not _is_set(pc.after.get(attribute)) and not contains_true(
                pc.after_unknown.get(attribute)
            ):
                raise _refused(pc, attribute, f"is not set: {reason}")


def _on(actions: Iterable[str], arn: str) -> list[AwsOperation]:
    return [AwsOperation(action, arn) for action in dict.fromkeys(actions)]


def _change(
    pc: PlannedChange, rtype: ResourceType | None, identifier: str, ops: Iterable[AwsOperation]
) -> Change:
    return Change(
        address=pc.display,
        resource_type=pc.type,
        actions=pc.actions if not pc.importing else (*pc.actions, "import"),
        identifier=identifier,
        operations=tuple(sorted(set(ops))),
    )


def _refused(pc: PlannedChange, attribute: str, reason: str) -> InvalidIntent:
    return InvalidIntent(f"{pc.display}: {attribute} {reason}", f"{pc.field.path}.change")


def _is_set(value: object) -> bool:
    """Does a configured value ask for something (an enabled block, a non-empty map)?"""
    if value is None or value is False or value in ("", -1) or value == [] or value == {}:
        return False
    if isinstance(value, list) and all(isinstance(v, dict) and "enabled" in v for v in value):
        return any(v["enabled"] is True for v in value)
    return True


def _changed_attributes(pc: PlannedChange) -> set[str]:
    names = set(pc.before) | set(pc.after) | set(pc.after_unknown)
    return {
        name
        for name in names
        if contains_true(pc.after_unknown.get(name)) or pc.before.get(name) != pc.after.get(name)
    }


def _strings_in(value: object) -> list[str]:
    """Every string inside a value (the value is already bounded in size and depth)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found
