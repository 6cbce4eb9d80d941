"""Checks on resource names an agent puts in a request, before any pattern matching.

Patterns are matched literally and case-sensitively (as IAM does), so most tricks simply
fail to match. These checks refuse the rest outright, with a reason: path traversal,
percent-encoding, control characters, and names that stand for everything.
"""

from __future__ import annotations

import re

from broker.policy.iam_actions import is_wildcard

MAX_RESOURCE_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x20\x7f\"'\\<>`{}|^]")
# Services whose ARN resource part starts with the resource's own name, not its type.
_NAME_FIRST_SERVICES = frozenset({"s3"})


def suspicious(resource: str) -> str | None:
    """Why a requested resource name is refused outright, or None when it may be matched."""
    if not resource:
        return "an empty resource name"
    if len(resource) > MAX_RESOURCE_LENGTH:
        return f"a resource name longer than {MAX_RESOURCE_LENGTH} characters"
    if _CONTROL.search(resource):
        return "whitespace, quotes or control characters in a resource name"
    if "%" in resource:
        return "percent-encoded characters in a resource name"
    if ".." in resource or "/./" in resource or resource.endswith("/."):
        return "a '..' or '.' path segment in a resource name"
    if "${" in resource:
        return "a placeholder in a resource name"
    return None


def names_everything(resource: str) -> bool:
    """'*', or an ARN whose partition/service/region/account or resource name is a wildcard.

    The resource name is the first segment of the resource part for S3 (the bucket) and the
    segment after the resource type elsewhere ('table/*' names every table).
    """
    if resource.replace("?", "*").strip("*") == "":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return True  # not an ARN: cannot be narrowed safely
    if any(is_wildcard(part) for part in parts[1:5]):
        return True
    segments = re.split(r"[/:]", parts[5])
    name_first = parts[2] in _NAME_FIRST_SERVICES or len(segments) == 1
    name = segments[0] if name_first else segments[1]
    return name.replace("?", "*").strip("*") == ""


def vault_path_regex(pattern: str) -> re.Pattern[str]:
    """A Vault ACL glob as a regex: '+' is one path segment, a trailing '*' any suffix."""
    parts = []
    for index, char in enumerate(pattern):
        if char == "+":
            parts.append("[^/]+")
        elif char == "*" and index == len(pattern) - 1:
            parts.append(".*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts))
