"""Rule ``environment-overlap``: what one environment grants must not reach another's.

A `dev` tier must not read `prod`: checked for every backend a scope grants on.

- **AWS**: each tier's resource patterns, placeholders filled in per environment (and
  region), against every other environment's;
- **Vault KV**: each environment's paths on a mount against the other environments' paths
  on the same mount (a dev path ``payments/*`` covers ``payments/prod/...``). Vault's
  ``+`` (one segment) is taken as ``*``, which can only report more;
- **databases**: each environment's objects against the other environments' objects on
  the same database connection of the same mount (``public.*`` in dev reaches prod's
  ``public.invoices`` when both name the connection ``payments``).

The broader pattern is blamed: it is the one reaching across environments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from broker.errors import Problem
from broker.policy.globs import covers, overlaps, substitute
from broker.scopes.lint_base import LintContext, problem_at
from broker.scopes.loader import LoadedScope
from broker.scopes.model import Environment

Key = tuple[object, ...]
# environment -> (namespace, concrete pattern) -> where the pattern was written
Expanded = Mapping[str, Mapping[tuple[str, str], Key]]

KEEP_APART = {
    "aws": "use ${env} or the account to keep environments apart",
    "vault": "use ${env} in the path, or another mount, to keep environments apart",
    "database": "give each environment its own connection (database), or other objects",
}


def environment_overlap(loaded: LoadedScope, ctx: LintContext) -> Iterator[Problem]:
    """No pattern of one environment matches another environment's resources."""
    for backend, rows in (("aws", _aws), ("vault", _vault), ("database", _database)):
        yield from _overlapping(loaded, backend, _expanded(loaded, rows))


Rows = Iterator[tuple[tuple[str, str], Key]]


def _expanded(loaded: LoadedScope, rows: Callable[[LoadedScope, Environment], Rows]) -> Expanded:
    """Each environment's (namespace, concrete pattern) rows; the first place written wins."""
    expanded: dict[str, dict[tuple[str, str], Key]] = {}
    for env in loaded.scope.environments.values():
        found = expanded.setdefault(env.name, {})
        for row, key in rows(loaded, env):
            found.setdefault(row, key)
    return expanded


def _aws(loaded: LoadedScope, env: Environment) -> Rows:
    regions = env.aws.regions if env.aws else (None,)
    for tier_name, tier in loaded.scope.tiers.items():
        for s_index, statement in enumerate(tier.aws):
            for r_index, pattern in enumerate(statement.resources):
                key = ("tiers", tier_name, "aws", s_index, "resources", r_index)
                for region in regions:
                    try:
                        resource = substitute(pattern, env.placeholders(region))
                    except KeyError:
                        continue  # a placeholder this environment lacks: see placeholders rule
                    if resource != "*":  # only for actions without resources
                        yield ("", resource), key


def _vault(loaded: LoadedScope, env: Environment) -> Rows:
    if env.vault is None:
        return
    for index, path in enumerate(env.vault.paths):
        try:
            concrete = substitute(path, env.placeholders(None)).replace("+", "*")
        except KeyError:
            continue
        yield (env.vault.mount, concrete), ("environments", env.name, "vault", "kv", "paths", index)


def _database(loaded: LoadedScope, env: Environment) -> Rows:
    if env.database is None:
        return
    place = f"{env.database.mount}/{env.database.connection}"
    for index, name in enumerate(env.database.objects):
        yield (place, name), ("environments", env.name, "database", "objects", index)


def _overlapping(loaded: LoadedScope, backend: str, expanded: Expanded) -> Iterator[Problem]:
    names = sorted(expanded)
    reported: set[Key] = set()
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            for (space_a, resource_a), key_a in expanded[first].items():
                for (space_b, resource_b), key_b in expanded[second].items():
                    if space_a != space_b or not overlaps(resource_a, resource_b):
                        continue
                    b_wider = covers(resource_b, resource_a) and not covers(resource_a, resource_b)
                    blamed, broad, broad_env, other, other_env = (
                        (key_b, resource_b, second, resource_a, first)
                        if b_wider
                        else (key_a, resource_a, first, resource_b, second)
                    )
                    if blamed in reported:
                        continue
                    reported.add(blamed)
                    where = f" on {space_a}" if space_a else ""
                    yield problem_at(
                        loaded,
                        blamed,
                        "environment-overlap",
                        f"'{broad}' ({broad_env}) also matches '{other}' ({other_env}){where}; "
                        + KEEP_APART[backend],
                    )
