"""One Terraform plan, read: its resource changes and its configuration, typed and bounded.

Follows Terraform's JSON output format as documented for ``terraform show -json``
(developer.hashicorp.com/terraform/internals/json-format), format_version 1.2, the
version Terraform 1.6 and later write. As that document asks, any 1.x is accepted,
unknown properties are ignored, and any other major version is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from broker.intent.fields import Field

FORMAT_VERSION_FOLLOWED = "1.2"
MAX_RESOURCE_CHANGES = 10_000  # a plan lists every resource of the state, no-ops too
MAX_MODULE_DEPTH = 20
# The action lists Terraform documents for a resource change.
PLAN_ACTIONS = frozenset(
    {
        ("no-op",),
        ("create",),
        ("read",),
        ("update",),
        ("delete", "create"),
        ("create", "delete"),
        ("delete",),
        ("forget",),
        ("create", "forget"),
    }
)
_MODULE_STEP = re.compile(r'module\.([A-Za-z0-9_-]+)(?:\[(?:\d+|"(?:[^"\\]|\\.)*")\])?')


@dataclass(frozen=True)
class PlannedChange:
    """One entry of ``resource_changes``: a resource instance and what will happen to it."""

    field: Field
    address: str
    module_address: str
    mode: str
    type: str
    name: str
    provider: str
    actions: tuple[str, ...]
    before: dict[str, Any]
    after: dict[str, Any]
    after_unknown: dict[str, Any]
    before_sensitive: dict[str, Any]
    after_sensitive: dict[str, Any]
    deposed: str | None
    importing: bool

    @property
    def display(self) -> str:
        return f"{self.address} (deposed object {self.deposed})" if self.deposed else self.address


def _object_or_empty(field: Field) -> dict[str, Any]:
    """A value that is an object, or absent/null/false (Terraform writes false for "none")."""
    if field.value is None or field.value is False:
        return {}
    return field.obj()


def read_resource_change(entry: Field) -> PlannedChange:
    change = entry.require("change")
    actions_field = change.require("actions")
    actions = actions_field.strings(2, 16)
    if actions not in PLAN_ACTIONS:
        raise actions_field.fail(f"is {list(actions)}, not an action list Terraform documents")
    mode = entry.require("mode").text(16)
    if mode not in ("managed", "data"):
        raise entry.get("mode").fail("must be managed or data")
    return PlannedChange(
        field=entry,
        address=entry.require("address").text(1024),
        module_address=entry.get("module_address").optional_text(1024) or "",
        mode=mode,
        type=entry.require("type").text(128),
        name=entry.require("name").text(256),
        provider=entry.require("provider_name").text(256),
        actions=actions,
        before=_object_or_empty(change.get("before")),
        after=_object_or_empty(change.get("after")),
        after_unknown=_object_or_empty(change.get("after_unknown")),
        before_sensitive=_object_or_empty(change.get("before_sensitive")),
        after_sensitive=_object_or_empty(change.get("after_sensitive")),
        deposed=entry.get("deposed").optional_text(64),
        importing=change.get("importing").present,
    )


def contains_true(value: object) -> bool:
    """Does an after_unknown / *_sensitive value mark anything (a leaf ``true``)?"""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is True:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Configuration:
    """The plan's ``configuration``: which attributes a resource sets, and to what reference."""

    def __init__(self, field: Field) -> None:
        self._field = field
        self._root = field.optional("root_module")
        # Each module's resources, indexed once: a plan's lookups stay linear in its size.
        self._modules: dict[tuple[str, ...], dict[tuple[object, ...], Field] | None] = {}

    def resource(self, change: PlannedChange) -> Field | None:
        """The configuration block a resource instance came from, or None."""
        steps = tuple(_MODULE_STEP.findall(change.module_address))
        if len(steps) > MAX_MODULE_DEPTH:
            raise change.field.get("module_address").fail("is nested too deeply")
        if steps not in self._modules:
            self._modules[steps] = self._index(steps)
        blocks = self._modules[steps]
        return None if blocks is None else blocks.get((change.mode, change.type, change.name))

    def _index(self, steps: tuple[str, ...]) -> dict[tuple[object, ...], Field] | None:
        module = self._root
        for step in steps:
            module = module.optional("module_calls").optional(step).optional("module")
        resources = module.optional("resources")
        if not resources.present:
            return None
        blocks: dict[tuple[object, ...], Field] = {}
        for block in resources.items(MAX_RESOURCE_CHANGES * 10):
            key = (block.get("mode").value, block.get("type").value, block.get("name").value)
            if all(isinstance(part, str) for part in key):
                blocks.setdefault(key, block)
        return blocks

    def expression(self, change: PlannedChange, attribute: str) -> Field | None:
        block = self.resource(change)
        if block is None:
            return None
        expression = block.optional("expressions").optional(attribute)
        return expression if expression.present else None

    def references(self, change: PlannedChange, attribute: str) -> tuple[str, ...]:
        expression = self.expression(change, attribute)
        if expression is None or not isinstance(expression.value, dict):
            return ()
        references = expression.get("references")
        return references.strings(64, 1024) if references.present else ()

    def provider_region(self, change: PlannedChange) -> str | None:
        """The region constant of the resource's provider configuration, when it is one."""
        block = self.resource(change)
        if block is None:
            return None
        key = block.get("provider_config_key").value
        if not isinstance(key, str):
            return None
        region = (
            self._field.optional("provider_config")
            .optional(key)
            .optional("expressions")
            .optional("region")
            .optional("constant_value")
        )
        return region.value if isinstance(region.value, str) else None
