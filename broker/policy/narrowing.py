"""What may still be issued of an approved grant once the scope changed: the intersection.

Approvers approved a stored grant; the scope in force at collection may grant less (a tier
narrowed) or more (a tier widened). The agent gets what both allow, never more than either:
for AWS each (action, resource, condition) of the stored session policy that a statement of
the current one also allows; for Vault each capability on each stored path that a current
path also grants; for PostgreSQL each privilege on each table (and the owner role) that the
current SQL also grants. The shorter lifetime wins. Anything that cannot be read as one of
these is left out (fail closed). Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from broker.policy.compiler import CAPABILITY_ORDER, DATABASE_PRIVILEGES, POLICY_VERSION
from broker.policy.globs import covers
from broker.policy.grant import DatabaseGrant, Grant
from broker.policy.resources import vault_path_regex

Condition = frozenset[tuple[str, str, frozenset[str]]]  # (operator, key, values)


def narrowed(stored: Grant, current: Grant) -> Grant:
    """The part of ``stored`` that ``current`` (the scope's grant for the same request now)
    also allows, for the shorter of their lifetimes."""
    if stored == current:
        return stored
    duration = min(stored.duration_seconds, current.duration_seconds)
    if stored.backend != current.backend:
        return Grant(stored.backend, stored.tier, duration)
    if stored.backend == "aws":
        policy = intersect_policies(stored.session_policy, current.session_policy)
        return replace(
            stored, duration_seconds=duration, role_arn=current.role_arn, session_policy=policy
        )
    if stored.backend == "vault":
        hcl = intersect_hcl(stored.vault_policy or "", current.vault_policy or "")
        unchanged = hcl == stored.vault_policy == current.vault_policy
        shared = stored.vault_tier_policy if unchanged else None
        return replace(
            stored, duration_seconds=duration, vault_policy=hcl, vault_tier_policy=shared
        )
    database = None
    if stored.database is not None and current.database is not None:
        database = intersect_database(stored.database, current.database)
    return replace(stored, duration_seconds=duration, database=database)


# -- AWS ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One action on one resource under one condition, as an Allow statement grants it."""

    action: str
    resource: str
    condition: Condition


def policy_facts(policy: Mapping[str, Any] | None) -> list[Fact]:
    """Every (action, resource, condition) an Allow statement grants; other statements
    (NotAction, NotResource, Deny) are not read, which only ever leaves something out."""
    facts = []
    for statement in (policy or {}).get("Statement", []):
        if statement.get("Effect") != "Allow" or "Action" not in statement:
            continue
        if "Resource" not in statement:
            continue
        condition = _condition(statement.get("Condition") or {})
        if condition is None:
            continue
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                facts.append(Fact(action, resource, condition))
    return facts


def _condition(block: Mapping[str, Any]) -> Condition | None:
    entries = set()
    for operator, keys in block.items():
        if not isinstance(keys, Mapping):
            return None
        for key, values in keys.items():
            entries.add((operator, key, frozenset(str(v) for v in _as_list(values))))
    return frozenset(entries)


def _both(first: Condition, second: Condition) -> Condition | None:
    """Conditions that hold when both hold (None: they cannot both hold, or it cannot be
    said: the fact is left out)."""
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for operator, key, values in (*first, *second):
        seen = merged.get((operator, key))
        if seen is None:
            merged[(operator, key)] = values
        elif operator == "StringEquals":
            merged[(operator, key)] = seen & values
        elif seen != values:
            return None
    if any(not values for values in merged.values()):
        return None
    return frozenset((op, key, values) for (op, key), values in merged.items())


def intersect_policies(
    stored: Mapping[str, Any] | None, current: Mapping[str, Any] | None
) -> dict[str, Any]:
    allowed = policy_facts(current)
    kept: set[Fact] = set()
    for fact in policy_facts(stored):
        for other in allowed:
            if not covers(other.action.lower(), fact.action.lower()):
                continue
            if not covers(other.resource, fact.resource):
                continue
            condition = _both(fact.condition, other.condition)
            if condition is not None:
                kept.add(Fact(fact.action, fact.resource, condition))
    return {"Version": POLICY_VERSION, "Statement": _statements(kept)}


def _statements(facts: Iterable[Fact]) -> list[dict[str, Any]]:
    """Facts back into statements: one per (condition, resources) with its actions."""
    by_resource: dict[tuple[Condition, str], set[str]] = {}
    for fact in facts:
        by_resource.setdefault((fact.condition, fact.resource), set()).add(fact.action)
    grouped: dict[tuple[Condition, tuple[str, ...]], list[str]] = {}
    for (condition, resource), named in by_resource.items():
        grouped.setdefault((condition, tuple(sorted(named))), []).append(resource)
    statements = []
    for (condition, actions), resources in grouped.items():
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Action": list(actions),
            "Resource": sorted(resources),
        }
        if condition:
            block: dict[str, dict[str, list[str]]] = {}
            for operator, key, values in sorted(condition, key=lambda c: (c[0], c[1])):
                block.setdefault(operator, {})[key] = sorted(values)
            statement["Condition"] = block
        statements.append(statement)
    return sorted(statements, key=lambda s: json.dumps(s, sort_keys=True))


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


# -- Vault ----------------------------------------------------------------------------

_BLOCK = re.compile(r'path "([^"]+)" \{\n  capabilities = \[([^\]]*)\]\n\}\n')


def hcl_paths(hcl: str) -> dict[str, set[str]]:
    """Path -> capabilities of an ACL policy in the broker's own layout."""
    paths: dict[str, set[str]] = {}
    for path, listed in _BLOCK.findall(hcl):
        capabilities = {c.strip().strip('"') for c in listed.split(",") if c.strip()}
        paths.setdefault(path, set()).update(capabilities)
    return paths


def intersect_hcl(stored: str, current: str) -> str:
    allowed = hcl_paths(current)
    header = [line for line in stored.splitlines(keepends=True) if line.startswith("#")][:1]
    blocks = []
    for path, capabilities in hcl_paths(stored).items():
        granted: set[str] = set()
        for pattern, theirs in allowed.items():
            if vault_path_regex(pattern).fullmatch(path):
                granted |= theirs
        kept = [c for c in CAPABILITY_ORDER if c in capabilities & granted]
        kept += sorted((capabilities & granted) - set(CAPABILITY_ORDER))
        if kept:
            rendered = ", ".join(f'"{c}"' for c in kept)
            blocks.append(f'path "{path}" {{\n  capabilities = [{rendered}]\n}}\n')
    return "".join(header) + "\n".join(blocks)


# -- PostgreSQL -------------------------------------------------------------------------

_GRANT = re.compile(r'GRANT (?P<what>[A-Z, ]+) ON (?P<on>.+) TO "\{\{name\}\}";')
_MEMBER = re.compile(r'GRANT (?P<role>"(?:[^"]|"")+") TO "\{\{name\}\}";')
_SCHEMA_OF_TABLE = re.compile(r'TABLE ("(?:[^"]|"")+")\.')
_ALL_IN_SCHEMA = "ALL TABLES IN SCHEMA "
PRIVILEGE_ORDER = DATABASE_PRIVILEGES["delete"]


def sql_facts(statements: Sequence[str]) -> set[tuple[str, str]]:
    """(privilege, object) pairs the login's creation SQL grants; membership is
    ("MEMBER", role), schema usage ("USAGE", 'SCHEMA "s"')."""
    facts: set[tuple[str, str]] = set()
    for sql in statements:
        member = _MEMBER.fullmatch(sql)
        if member:
            facts.add(("MEMBER", member["role"]))
            continue
        grant = _GRANT.fullmatch(sql)
        if grant:
            facts.update((p.strip(), grant["on"]) for p in grant["what"].split(","))
    return facts


def _allowed(fact: tuple[str, str], allowed: set[tuple[str, str]]) -> bool:
    if fact in allowed:
        return True
    privilege, target = fact
    schema = _SCHEMA_OF_TABLE.match(target)
    return bool(schema) and (privilege, _ALL_IN_SCHEMA + schema[1]) in allowed  # type: ignore[index]


def intersect_database(stored: DatabaseGrant, current: DatabaseGrant) -> DatabaseGrant:
    allowed = sql_facts(current.creation_statements)
    kept = {fact for fact in sql_facts(stored.creation_statements) if _allowed(fact, allowed)}
    tables: dict[str, list[str]] = {}
    members: list[str] = []
    for privilege, target in sorted(kept):
        if privilege == "MEMBER":
            members.append(target)
        elif privilege != "USAGE":
            tables.setdefault(target, []).append(privilege)
    schemas = {
        target.removeprefix(_ALL_IN_SCHEMA)
        if target.startswith(_ALL_IN_SCHEMA)
        else _SCHEMA_OF_TABLE.match(target)[1]  # type: ignore[index]
        for target in tables
    }
    creation = [s for s in stored.creation_statements if s.startswith("CREATE ROLE ")]
    creation += [
        f'GRANT USAGE ON SCHEMA {schema} TO "{{{{name}}}}";'
        for schema in sorted(schemas)
        if ("USAGE", f"SCHEMA {schema}") in kept
    ]
    for target, privileges in sorted(tables.items()):
        ordered = [p for p in PRIVILEGE_ORDER if p in privileges]
        ordered += sorted(set(privileges) - set(PRIVILEGE_ORDER))
        creation.append(f'GRANT {", ".join(ordered)} ON {target} TO "{{{{name}}}}";')
    creation += [f'GRANT {role} TO "{{{{name}}}}";' for role in members]
    return replace(stored, creation_statements=tuple(creation))
