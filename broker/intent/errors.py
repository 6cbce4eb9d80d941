"""Refusals of an intent, as BadRequest subclasses the API's one error handler renders.

Each names what is at fault: the JSON path of a malformed field, the resource type a plan
uses that the broker cannot map, or every operation the scope does not allow.
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.errors import BadRequest


class InvalidIntent(BadRequest):
    """The intent is malformed, too large, ambiguous, or names what it may not."""

    code = "invalid_intent"


class UnsupportedResourceType(InvalidIntent):
    """A plan or change set changes a resource type the broker has no mapping for.

    Never answered with a wildcard: the request is refused, naming the type and where.
    """

    code = "unsupported_resource_type"

    def __init__(self, message: str, field: str, resource_type: str, address: str) -> None:
        super().__init__(message, field)
        self.resource_type = resource_type
        self.address = address

    def body(self) -> dict[str, object]:
        return {**super().body(), "resource_type": self.resource_type, "address": self.address}


class IntentOutsideScope(BadRequest):
    """Operations the scope's tiers do not grant in this environment and region (400)."""

    code = "intent_outside_scope"

    def __init__(self, message: str, operations: Sequence[dict[str, object]]) -> None:
        super().__init__(message, "intent")
        self.operations = list(operations)

    def body(self) -> dict[str, object]:
        return {**super().body(), "operations": self.operations}


class IntentRequired(BadRequest):
    """The tier says ``intent: required`` and the request carries none (400)."""

    code = "intent_required"

    def __init__(self, message: str) -> None:
        super().__init__(message, "intent")
