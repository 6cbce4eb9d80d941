"""An intent back from its canonical JSON, as the store and the audit keep it.

Collection re-reads the approved intent from the stored canonical form and compiles it
again against the scope in force: if the result differs from what was approved, or the
text no longer hashes to the approved SHA-256, nothing is issued.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

from broker.intent.errors import InvalidIntent
from broker.intent.fields import Field, check_bounds
from broker.intent.model import (
    CANONICAL_VERSION,
    INTENT_KINDS,
    AwsOperation,
    Change,
    DatabaseOperation,
    Intent,
    Operation,
    VaultOperation,
)
from broker.scopes.model import BACKENDS


def from_canonical(text: str, expected_sha256: str) -> Intent:
    """The intent whose canonical JSON is ``text``; refuses unless it hashes as expected."""
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidIntent("the stored intent is not JSON", "intent") from None
    check_bounds(value, "intent")
    root = Field(value, "intent")
    if root.require("version").value != CANONICAL_VERSION:
        raise root.get("version").fail(f"must be {CANONICAL_VERSION}")
    kind = root.require("kind").text(64)
    backend = root.require("backend").text(16)
    if kind not in INTENT_KINDS or backend not in BACKENDS:
        raise root.fail("has an unknown kind or backend")
    operations = tuple(_operation(f) for f in root.require("operations").items(100_000))
    changes = (
        tuple(_change(f) for f in root.get("changes").items(100_000))
        if root.get("changes").present
        else ()
    )
    source = root.get("source")
    pairs = tuple(sorted((k, str(v)) for k, v in source.obj().items())) if source.present else ()
    intent = Intent(kind, backend, operations, changes, pairs)
    if intent.canonical_json != text or intent.sha256 != expected_sha256:
        raise InvalidIntent("the stored intent does not match its hash", "intent")
    return intent


def _operation(field: Field) -> Operation:
    data = field.obj()
    if "action" in data:
        conditions = field.get("conditions")
        pairs = (
            tuple(sorted((k, str(v)) for k, v in conditions.obj().items()))
            if (conditions.present)
            else ()
        )
        return AwsOperation(field.require("action").text(), field.require("resource").text(), pairs)
    if "path" in data:
        return VaultOperation(
            field.require("path").text(), field.require("capabilities").strings(8)
        )
    return DatabaseOperation(field.require("object").text(), field.require("privileges").strings(8))


def _change(field: Field) -> Change:
    executed_by = field.get("executed_by").optional_text(32) or "agent"
    if executed_by not in ("agent", "cloudformation"):
        raise field.get("executed_by").fail("must be agent or cloudformation")
    operations: tuple[Any, ...] = ()
    if field.get("operations").present:
        operations = tuple(_operation(f) for f in field.get("operations").items(10_000))
    return Change(
        address=field.require("address").text(),
        resource_type=field.require("type").text(),
        actions=field.require("actions").strings(3),
        identifier=field.get("identifier").optional_text() or "",
        conditional=field.get("conditional").boolean(False),
        executed_by=cast(Literal["agent", "cloudformation"], executed_by),
        operations=operations,
    )
