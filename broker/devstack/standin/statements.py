"""Does one IAM policy statement apply to a request? (pure)

Action names match case-insensitively with ``*`` and ``?``; resource ARNs match part by
part (partition, service, region, account, then the resource, where ``*`` may span ``/``
and ``:``), case-sensitively; an ARN with fewer parts is padded with ``*`` as IAM does in
identity policies. Policy variables (``${aws:username}``, ``${aws:PrincipalTag/k}``,
``${k, 'default'}``) are filled from the request context in policies of version
2012-10-17; a variable with no value makes its resource or condition value match nothing.

A statement whose applicability cannot be proven (an unknown condition operator, or a
resource the stand-in cannot name) is resolved in the safe direction: an Allow does not
apply, a Deny does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.devstack.standin.conditions import (
    Context,
    UnsupportedCondition,
    conditions_match,
    glob_match,
    lookup,
)

ALL = "*"
_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Principal:
    """Who signed the request: an IAM user, or a session of a role."""

    arn: str  # user ARN, or arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION
    account: str
    role_arn: str | None = None  # the role of a session (with its path)


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str  # service:Action
    resource: str | None  # None: a resource the stand-in cannot name
    context: Context


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def statements_of(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in as_list(document.get("Statement")) if isinstance(s, Mapping)]


def resolve_variables(text: str, context: Context, enabled: bool) -> str | None:
    """``text`` with its policy variables filled; None when one has no value."""
    if not enabled or "${" not in text:
        return text
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        inner = match.group(1)
        if inner in ("*", "?", "$"):
            return inner
        key, _, default = inner.partition(",")
        values = lookup(context, key.strip())
        if values:
            return values[0]
        fallback = default.strip()
        if len(fallback) >= 2 and fallback[0] == fallback[-1] == "'":
            return fallback[1:-1]
        missing = True
        return ""

    filled = _VARIABLE.sub(fill, text)
    return None if missing else filled


def action_matches(patterns: Sequence[Any], action: str) -> bool:
    return any(str(p) == ALL or glob_match(str(p), action, case_sensitive=False) for p in patterns)


def resource_matches(pattern: str, resource: str) -> bool:
    if pattern == ALL:
        return True
    if resource == ALL:
        return False  # a request on "all resources" is matched only by "*"
    wanted = pattern.split(":", 5)
    if len(wanted) < 6:
        wanted += [ALL] * (6 - len(wanted))
    got = resource.split(":", 5)
    if len(got) != 6:
        return False
    return all(glob_match(w, g) for w, g in zip(wanted, got, strict=True))


def principal_matches(element: Any, principal: Principal) -> bool:
    """A resource policy's Principal element names the caller (directly or its account)."""
    return principal_kind(element, principal) is not None


def principal_kind(element: Any, principal: Principal) -> str | None:
    """'direct' when the caller itself (user, role, session) is named, 'account' when its
    account is, None when neither is."""
    if element == ALL:
        return "account"
    if not isinstance(element, Mapping):
        return None
    found: str | None = None
    for value in as_list(element.get("AWS")):
        name = str(value)
        if name == ALL:
            found = found or "account"
        elif name in (principal.arn, principal.role_arn):
            return "direct"
        elif name in (principal.account, f"arn:aws:iam::{principal.account}:root"):
            found = "account"
    return found


@dataclass(frozen=True)
class Applies:
    """Whether a statement applies, and how the principal was named (resource policies)."""

    applies: bool
    principal: str | None = None


NOT_APPLICABLE = Applies(False)


def statement_applies(
    statement: Mapping[str, Any], request: Request, version: str, resource_policy: bool
) -> Applies:
    deny = statement.get("Effect") == "Deny"
    if "NotAction" in statement:
        if action_matches(as_list(statement["NotAction"]), request.action):
            return NOT_APPLICABLE
    elif not action_matches(as_list(statement.get("Action")), request.action):
        return NOT_APPLICABLE

    named: str | None = None
    if resource_policy:
        if "NotPrincipal" in statement:
            if principal_matches(statement["NotPrincipal"], request.principal):
                return NOT_APPLICABLE
            named = "account"
        else:
            named = principal_kind(statement.get("Principal"), request.principal)
            if named is None:
                return NOT_APPLICABLE

    variables = version == "2012-10-17"
    if not _resource_applies(statement, request, variables, deny):
        return NOT_APPLICABLE

    block = statement.get("Condition")
    if block:
        try:
            if not conditions_match(
                block,
                request.context,
                lambda value: resolve_variables(value, request.context, variables),
            ):
                return NOT_APPLICABLE
        except UnsupportedCondition:
            if not deny:
                return NOT_APPLICABLE
    return Applies(True, named)


def _resource_applies(
    statement: Mapping[str, Any], request: Request, variables: bool, deny: bool
) -> bool:
    negated = "NotResource" in statement
    element = statement.get("NotResource" if negated else "Resource")
    if element is None:
        return True  # trust policies carry no Resource
    patterns = [resolve_variables(str(p), request.context, variables) for p in as_list(element)]
    if request.resource is None:
        # The stand-in cannot name this request's resource: only "*" proves an Allow,
        # and a Deny is taken to apply.
        if deny:
            return True
        return not negated and ALL in patterns
    hit = any(p is not None and resource_matches(p, request.resource) for p in patterns)
    return not hit if negated else hit
