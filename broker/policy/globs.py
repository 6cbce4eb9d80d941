"""IAM-style resource patterns: placeholders, matching, coverage and overlap.

In IAM resource ARNs ``*`` matches any run of characters (``/`` and ``:`` included) and
``?`` matches one character; matching is case-sensitive. These helpers keep the same
semantics so what the broker checks is what AWS will enforce.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def placeholders_in(pattern: str) -> list[str]:
    return PLACEHOLDER.findall(pattern)


def substitute(pattern: str, values: Mapping[str, str]) -> str:
    """Replace ${name} placeholders; unknown names raise KeyError (the loader forbids them)."""
    if "${" not in pattern:
        return pattern
    for name, value in values.items():
        pattern = pattern.replace("${" + name + "}", value)
    if "${" in pattern:
        raise KeyError(PLACEHOLDER.findall(pattern)[0])
    return pattern


@lru_cache(maxsize=16384)
def _covering_regex(pattern: str) -> re.Pattern[str]:
    # A '?' of the pattern must not swallow a wildcard of the requested resource: one
    # concrete character cannot stand for a run of them.
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append("[^*?]")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def covers(pattern: str, requested: str) -> bool:
    """Does ``pattern`` allow everything ``requested`` can name?

    ``requested`` may itself hold wildcards; they are taken literally, which is sound: a
    literal ``*`` can only be consumed by a ``*`` of the pattern, and then so can anything
    the requested ``*`` expands to.
    """
    return _covering_regex(pattern).fullmatch(requested) is not None


def _literal_ends_conflict(first: str, second: str) -> bool:
    """Quick refusal: the literal text before the first and after the last wildcard differs."""
    for a, b in zip(first, second, strict=False):
        if a in "*?" or b in "*?":
            break
        if a != b:
            return True
    for a, b in zip(reversed(first), reversed(second), strict=False):
        if a in "*?" or b in "*?":
            break
        if a != b:
            return True
    return False


def overlaps(first: str, second: str) -> bool:
    """Can some concrete resource match both patterns? (glob intersection is non-empty)"""
    if _literal_ends_conflict(first, second):
        return False
    if "*" not in first and "?" not in first and "*" not in second and "?" not in second:
        return first == second
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        i, j = stack.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(first) and j == len(second):
            return True
        a = first[i] if i < len(first) else None
        b = second[j] if j < len(second) else None
        if a == "*":
            stack.append((i + 1, j))  # the star matches nothing more
            if b is not None:
                stack.append((i, j + 1))  # the star swallows one more char of the other
        if b == "*":
            stack.append((i, j + 1))
            if a is not None:
                stack.append((i + 1, j))
        if a is not None and b is not None and a != "*" and b != "*":
            if a == b or a == "?" or b == "?":
                stack.append((i + 1, j + 1))
    return False
