"""Intents as files: what ``broker creds --intent FILE`` and the MCP tools send.

An intent (docs/intents.md) says what the agent will do, and the credential can do
exactly that. A file may hold the intent object itself (``{"operations": [...]}``,
``{"terraform_plan": ...}`` or ``{"cloudformation_change_set": ...}``) or, as the tools
print them, the JSON of ``terraform show -json PLAN`` or of ``aws cloudformation
describe-change-set``, which is wrapped for the broker. Nothing of it is logged or cached:
a plan holds sensitive values in clear text.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker_client.errors import BrokerClientError

FORMS = ("operations", "terraform_plan", "cloudformation_change_set")
MAX_FILE_BYTES = 64 * 1024 * 1024  # the broker's own bound is lower; this only stops a runaway


def as_intent(value: object) -> dict[str, Any]:
    """``value`` as the broker's ``intent`` member; ``invalid_argument`` when it is none."""
    if not isinstance(value, Mapping):
        raise BrokerClientError("an intent is a JSON object", "invalid_argument")
    if len(value) == 1 and next(iter(value)) in FORMS:
        return dict(value)
    if "resource_changes" in value and "format_version" in value:
        return {"terraform_plan": dict(value)}
    if "ChangeSetId" in value and "Changes" in value:
        return {"cloudformation_change_set": dict(value)}
    raise BrokerClientError(
        "the intent file is neither an intent ({operations | terraform_plan | "
        "cloudformation_change_set: ...}) nor the JSON of terraform show -json or of "
        "aws cloudformation describe-change-set",
        "invalid_argument",
    )


def load_intent(path: str) -> dict[str, Any]:
    """The intent in the JSON file at ``path`` ('-': standard input)."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open(encoding="utf-8") as handle:
                text = handle.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise BrokerClientError(
            f"cannot read the intent file {path}: {e.strerror or type(e).__name__}",
            "invalid_argument",
        ) from None
    except UnicodeDecodeError:
        raise BrokerClientError(
            f"the intent file {path} is not UTF-8", "invalid_argument"
        ) from None
    if len(text) > MAX_FILE_BYTES:
        raise BrokerClientError(f"the intent file {path} is too large", "invalid_argument")
    try:
        value = json.loads(text)
    except ValueError:
        raise BrokerClientError(
            f"the intent file {path} is not JSON (for a plan: terraform show -json PLAN)",
            "invalid_argument",
        ) from None
    return as_intent(value)


def digest(intent: Mapping[str, Any]) -> str:
    """A local fingerprint of an intent (for cache keys: never the intent itself)."""
    text = json.dumps(intent, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
