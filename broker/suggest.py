"""'Did you mean ...?' for a mistyped name, among the names that would have been valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, candidates: Iterable[str], cutoff: float = 0.75) -> str | None:
    """The candidate most like ``word`` (case-insensitive), if one is close enough."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    found = difflib.get_close_matches(word.lower(), sorted(by_lower), n=1, cutoff=cutoff)
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.75) -> str:
    """'; did you mean 'x'?' when a candidate is close to ``word``, else ''."""
    found = closest(word, candidates, cutoff)
    return f"; did you mean '{found}'?" if found and found != word else ""
