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
import os
import stat
import sys
from collections.abc import Mapping
from typing import Any

from broker_client.errors import BrokerClientError

FORMS = ("operations", "terraform_plan", "cloudformation_change_set")
MAX_FILE_BYTES = 64 * 1024 * 1024  # the broker's own bound is lower; this only stops a runaway


def as_intent(value: object, source: str = "the intent", field: str = "intent") -> dict[str, Any]:
    """``value`` as the broker's ``intent`` member; ``invalid_argument`` (naming ``field``)
    when it is none. ``source`` says where it came from, in the message."""
    if not isinstance(value, Mapping):
        raise _invalid(f"{source} is not a JSON object", field)
    if len(value) == 1 and next(iter(value)) in FORMS:
        return dict(value)
    if "resource_changes" in value and "format_version" in value:
        return {"terraform_plan": dict(value)}
    if "ChangeSetId" in value and "Changes" in value:
        return {"cloudformation_change_set": dict(value)}
    raise _invalid(
        f"{source} is neither an intent ({{operations | terraform_plan | "
        "cloudformation_change_set: ...}) nor the JSON of terraform show -json or of "
        "aws cloudformation describe-change-set",
        field,
    )


def load_intent(path: str, field: str = "intent_file") -> dict[str, Any]:
    """The intent in the JSON file at ``path`` ('-': standard input)."""
    source = f"the intent file {path}"
    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE_BYTES + 1)
        else:
            text = _read_regular_file(path, source, field)
    except OSError as e:
        raise _invalid(f"cannot read {source}: {e.strerror or type(e).__name__}", field) from None
    except UnicodeDecodeError:
        raise _invalid(f"{source} is not UTF-8", field) from None
    if len(text) > MAX_FILE_BYTES:
        raise _invalid(f"{source} is too large", field)
    try:
        value = json.loads(text)
    except RecursionError:  # deeper than the parser recurses: far beyond the broker's bound
        raise _invalid(f"{source} is nested too deeply to be an intent", field) from None
    except ValueError:
        raise _invalid(
            f"{source} is not JSON (for a plan: terraform show -json PLAN)", field
        ) from None
    return as_intent(value, source, field)


def _read_regular_file(path: str, source: str, field: str) -> str:
    """The text of ``path`` if it is a regular file. A pipe, a device or /dev/stdin (on the
    MCP stdio transport, the host's own stream) would block or eat what is not ours; it
    is opened without waiting and refused."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _invalid(f"{source} is not a regular file ('-' reads standard input)", field)
        return handle.read(MAX_FILE_BYTES + 1).decode("utf-8")


def _invalid(message: str, field: str) -> BrokerClientError:
    return BrokerClientError(message, "invalid_argument", field=field)


def digest(intent: Mapping[str, Any]) -> str:
    """A local fingerprint of an intent (for cache keys: never the intent itself)."""
    text = json.dumps(intent, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
