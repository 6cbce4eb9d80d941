"""Typed, bounded reading of the intent's JSON, every refusal naming the field's path.

An intent can be a whole ``terraform show -json`` document written by the agent, so it is
hostile input: its size is checked once, without recursion, before anything reads it,
and every later read checks the type it expects (``intent.terraform_plan.resource_changes[3]
.change.actions must be a list of strings``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from broker.intent.errors import InvalidIntent

# Generous for real plans (a plan of a thousand resources is a few MiB), small enough
# that a hostile one costs little: the walk below is linear in nodes and never recurses.
MAX_DEPTH = 100
MAX_NODES = 200_000
MAX_STRING_CHARS = 1024 * 1024
MAX_TOTAL_CHARS = 8 * 1024 * 1024


def check_bounds(value: object, path: str) -> None:
    """Refuse a JSON value too deep, too big, or holding what JSON cannot (NaN, non-str keys)."""
    nodes = 0
    chars = 0
    stack: list[tuple[object, int, str]] = [(value, 1, path)]
    while stack:
        item, depth, where = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidIntent(f"{path} has more than {MAX_NODES} JSON values", path)
        if depth > MAX_DEPTH:
            raise InvalidIntent(f"{where} is nested deeper than {MAX_DEPTH} levels", path)
        if isinstance(item, str):
            if len(item) > MAX_STRING_CHARS:
                raise InvalidIntent(f"{where} is longer than {MAX_STRING_CHARS} characters", path)
            chars += len(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidIntent(f"{where} has a key that is not a string", path)
                chars += len(key)
                stack.append((child, depth + 1, f"{where}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidIntent(f"{where} is not a finite number", path)
        elif item is not None and not isinstance(item, (bool, int)):
            raise InvalidIntent(f"{where} is not a JSON value", path)
        if chars > MAX_TOTAL_CHARS:
            raise InvalidIntent(f"{path} holds more than {MAX_TOTAL_CHARS} characters", path)


@dataclass(frozen=True)
class Field:
    """A JSON value and where it sits in the intent, for errors that point at it."""

    value: object
    path: str

    def fail(self, message: str) -> InvalidIntent:
        return InvalidIntent(f"{self.path} {message}", self.path)

    @property
    def present(self) -> bool:
        return self.value is not None

    def obj(self) -> dict[str, object]:
        if not isinstance(self.value, dict):
            raise self.fail("must be an object")
        return self.value

    def get(self, key: str) -> Field:
        """The member ``key`` (None when absent); this must be an object."""
        return Field(self.obj().get(key), f"{self.path}.{key}")

    def optional(self, key: str) -> Field:
        """Like :meth:`get`, but a null or absent self reads as an empty object."""
        if self.value is None:
            return Field(None, f"{self.path}.{key}")
        return self.get(key)

    def require(self, key: str) -> Field:
        member = self.get(key)
        if not member.present:
            raise member.fail("is required")
        return member

    def text(self, max_chars: int = 2048) -> str:
        if not isinstance(self.value, str) or not self.value:
            raise self.fail("must be a non-empty string")
        if len(self.value) > max_chars:
            raise self.fail(f"must be at most {max_chars} characters")
        return self.value

    def optional_text(self, max_chars: int = 2048) -> str | None:
        return self.text(max_chars) if self.present else None

    def boolean(self, default: bool) -> bool:
        if self.value is None:
            return default
        if not isinstance(self.value, bool):
            raise self.fail("must be true or false")
        return self.value

    def items(self, max_items: int) -> Iterator[Field]:
        if not isinstance(self.value, list):
            raise self.fail("must be a list")
        if len(self.value) > max_items:
            raise self.fail(f"must have at most {max_items} entries")
        return (Field(item, f"{self.path}[{i}]") for i, item in enumerate(self.value))

    def strings(self, max_items: int, max_chars: int = 256) -> tuple[str, ...]:
        if not isinstance(self.value, list) or not all(
            isinstance(s, str) and s and len(s) <= max_chars for s in self.value
        ):
            raise self.fail(f"must be a list of strings (each at most {max_chars} characters)")
        if len(self.value) > max_items:
            raise self.fail(f"must have at most {max_items} entries")
        return tuple(self.value)

    def only(self, allowed: frozenset[str]) -> None:
        """Refuse members outside ``allowed`` (hand-written input; plans are open by design)."""
        unknown = sorted(set(self.obj()) - allowed)
        if unknown:
            raise InvalidIntent(f"{self.path} has an unknown field '{unknown[0]}'", self.path)
