"""IAM condition operators, as AWS documents them, over a request context.

A context maps condition keys (case-insensitive, as in AWS) to one or more string values.
A ``Condition`` block ANDs its operators and, within an operator, its keys; the values
listed for one key are ORed, except for the negated operators, which must match none of
them. A key missing from the context makes a positive operator false and a negated
operator true; ``...IfExists`` makes any operator true when its key is missing.
``ForAnyValue:`` / ``ForAllValues:`` compare multivalued keys as sets.

An operator this module does not know raises :class:`UnsupportedCondition`; the evaluator
decides what that means (an Allow that cannot be proven does not apply; a Deny does).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

Context = Mapping[str, str | Sequence[str]]  # a key's one value, or its values


class UnsupportedCondition(ValueError):
    """A condition operator or value this stand-in cannot evaluate."""


def lookup(context: Context, key: str) -> tuple[str, ...] | None:
    """The values of ``key`` (case-insensitive), or None when absent."""
    wanted = key.lower()
    for name, values in context.items():
        if name.lower() == wanted:
            return (values,) if isinstance(values, str) else tuple(values)
    return None


@lru_cache(maxsize=4096)
def glob_regex(pattern: str, case_sensitive: bool = True) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` exactly one."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE)


def glob_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    return glob_regex(pattern, case_sensitive).fullmatch(value) is not None


def parse_date(value: str) -> dt.datetime:
    """ISO 8601 (date, or date and time with an offset or Z, fractions allowed) or epoch
    seconds, as IAM's date operators accept them."""
    text = value.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as e:
        raise UnsupportedCondition(f"not a date: {value!r}") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError as e:
        raise UnsupportedCondition(f"not a number: {value!r}") from e


def arn_match(pattern: str, value: str) -> bool:
    """ARN operators compare the six colon-separated parts one by one."""
    wanted = pattern.split(":", 5)
    got = value.split(":", 5)
    if len(wanted) != 6 or len(got) != 6:
        return False
    return all(glob_match(w, g) for w, g in zip(wanted, got, strict=True))


def _ip_match(pattern: str, value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False


# Positive comparisons: (policy value, context value) -> match.
Compare = Callable[[str, str], bool]
_POSITIVE: dict[str, Compare] = {
    "stringequals": lambda p, v: p == v,
    "stringequalsignorecase": lambda p, v: p.lower() == v.lower(),
    "stringlike": lambda p, v: glob_match(p, v),
    "numericequals": lambda p, v: _number(v) == _number(p),
    "numericlessthan": lambda p, v: _number(v) < _number(p),
    "numericlessthanequals": lambda p, v: _number(v) <= _number(p),
    "numericgreaterthan": lambda p, v: _number(v) > _number(p),
    "numericgreaterthanequals": lambda p, v: _number(v) >= _number(p),
    "dateequals": lambda p, v: parse_date(v) == parse_date(p),
    "datelessthan": lambda p, v: parse_date(v) < parse_date(p),
    "datelessthanequals": lambda p, v: parse_date(v) <= parse_date(p),
    "dategreaterthan": lambda p, v: parse_date(v) > parse_date(p),
    "dategreaterthanequals": lambda p, v: parse_date(v) >= parse_date(p),
    "bool": lambda p, v: p.lower() == v.lower(),
    "binaryequals": lambda p, v: p == v,
    "ipaddress": _ip_match,
    "arnequals": arn_match,
    "arnlike": arn_match,
}
# Negated operators: true when the context value matches none of the policy values.
_NEGATED: dict[str, str] = {
    "stringnotequals": "stringequals",
    "stringnotequalsignorecase": "stringequalsignorecase",
    "stringnotlike": "stringlike",
    "numericnotequals": "numericequals",
    "datenotequals": "dateequals",
    "notipaddress": "ipaddress",
    "arnnotequals": "arnequals",
    "arnnotlike": "arnlike",
}


def _values(raw: object) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    return [str(i).lower() if isinstance(i, bool) else str(i) for i in items]


def operator_matches(
    operator: str,
    key: str,
    policy_values: object,
    context: Context,
    resolve: Callable[[str], str | None] = lambda v: v,
) -> bool:
    """One operator on one key. ``resolve`` fills policy variables in policy values (None
    when a variable has no value: that value matches nothing)."""
    name = operator.lower()
    qualifier = ""
    if ":" in name:
        qualifier, name = name.split(":", 1)
        if qualifier not in ("foranyvalue", "forallvalues"):
            raise UnsupportedCondition(f"unknown set operator {operator!r}")
    if_exists = name.endswith("ifexists") and name != "ifexists"
    base = name.removesuffix("ifexists") if if_exists else name
    actual = lookup(context, key)
    wanted = _values(policy_values)

    if base == "null":
        if qualifier or if_exists:
            raise UnsupportedCondition(f"unsupported operator {operator!r}")
        present = actual is not None and len(actual) > 0
        return any((w.lower() == "true") != present for w in wanted)

    negated = base in _NEGATED
    compare = _POSITIVE.get(_NEGATED.get(base, base))
    if compare is None:
        raise UnsupportedCondition(f"unknown condition operator {operator!r}")
    variables = base.startswith(("string", "arn"))
    resolved = [resolve(w) if variables else w for w in wanted]
    candidates = [r for r in resolved if r is not None]

    def one(value: str) -> bool:
        hit = any(compare(c, value) for c in candidates)
        return not hit if negated else hit

    if actual is None or not actual:
        if qualifier == "forallvalues":
            return True
        if qualifier == "foranyvalue":
            return False
        return if_exists or negated
    if qualifier == "forallvalues":
        return all(one(v) for v in actual)
    if qualifier == "foranyvalue":
        return any(one(v) for v in actual)
    return any(one(v) for v in actual)


def conditions_match(
    block: Mapping[str, object],
    context: Context,
    resolve: Callable[[str], str | None] = lambda v: v,
) -> bool:
    """A whole Condition element: every operator, every key."""
    for operator, keys in block.items():
        if not isinstance(keys, Mapping):
            raise UnsupportedCondition(f"condition {operator!r} must map keys to values")
        for key, values in keys.items():
            if not operator_matches(operator, str(key), values, context, resolve):
                return False
    return True
