"""Checks on names a plan or change set puts into ARNs, and Terraform reference parsing."""

from __future__ import annotations

import re

MAX_NAME_CHARS = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# type.name, an optional [index], an optional .attribute (Terraform's "references" entries)
_REFERENCE = re.compile(
    r"(?P<type>[a-z][a-z0-9_]*)\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)"
    r'(?P<index>\[(?:\d+|"(?:[^"\\]|\\.)*")\])?(?:\.(?P<attribute>[a-z0-9_]+))?'
)
_NOT_RESOURCES = frozenset(
    {"var", "local", "module", "data", "each", "count", "path", "self", "terraform"}
)


def check_name(value: str) -> str | None:
    """Why a name cannot go into an ARN the broker grants on, or None when it can."""
    if not value:
        return "is empty"
    if len(value) > MAX_NAME_CHARS:
        return f"is longer than {MAX_NAME_CHARS} characters"
    if _CONTROL.search(value):
        return "holds control characters"
    if "*" in value or "?" in value:
        return (
            "holds a wildcard ('*' or '?'): in an IAM policy it would match more than the "
            "plan names, and the broker grants exactly what it names"
        )
    if "${" in value:
        return "holds '${', which an IAM policy reads as a variable"
    return None


def reference_parts(reference: str) -> tuple[str, str, str | None] | None:
    """'aws_iam_role.app.arn' -> ('aws_iam_role.app', 'aws_iam_role', 'arn'); None if not a
    managed resource of the same module (variables, locals, data sources, module outputs)."""
    match = _REFERENCE.fullmatch(reference)
    if match is None or match.group("type") in _NOT_RESOURCES:
        return None
    address = f"{match.group('type')}.{match.group('name')}{match.group('index') or ''}"
    return address, match.group("type"), match.group("attribute")
