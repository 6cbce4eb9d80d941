"""The scope model: what the platform team declared, as frozen values.

A scope is one service. Tiers are cumulative: ``write`` grants what ``read`` grants plus
its own statements, ``delete`` grants what ``write`` grants plus its own. Values here are
already validated by the loader; nothing in this module does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

TierName = Literal["read", "write", "delete"]
TIERS: tuple[TierName, ...] = ("read", "write", "delete")
ESCALATED_TIERS: tuple[TierName, ...] = ("write", "delete")
Backend = Literal["aws", "vault", "database"]
BACKENDS: tuple[Backend, ...] = ("aws", "vault", "database")

PLACEHOLDERS = ("env", "region", "account")


def tiers_up_to(tier: TierName) -> tuple[TierName, ...]:
    """The tiers whose grants a tier includes (tiers are cumulative)."""
    return TIERS[: TIERS.index(tier) + 1]


@dataclass(frozen=True)
class Position:
    """Where a value was declared, for error messages that point into the YAML."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class AwsStatement:
    """Actions and resource patterns (with ${env}/${region}/${account} placeholders)."""

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    position: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Approval:
    """Who may approve an escalation to a tier, how many must, and how long to wait."""

    approvers: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    required: int = 1
    delay_seconds: int = 0
    allow_slack_approval: bool = True
    pending_expiry_seconds: int = 1800
    channel: str | None = None
    # A delete tier with fewer than 2 approvals is refused unless this states why.
    unsafe_single_approver: str | None = None


@dataclass(frozen=True)
class RateLimit:
    count: int
    per_seconds: int

    def __str__(self) -> str:
        unit = {3600: "h", 86400: "d", 60: "m", 1: "s"}.get(self.per_seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per_seconds}s"


@dataclass(frozen=True)
class Tier:
    name: TierName
    ttl_seconds: int
    aws: tuple[AwsStatement, ...] = ()
    approval: Approval | None = None
    max_resources: int | None = None
    rate_limit: RateLimit | None = None
    vault_num_uses: int = 0


@dataclass(frozen=True)
class AwsEnvironment:
    account: str
    regions: tuple[str, ...]
    roles: Mapping[TierName, str]


@dataclass(frozen=True)
class VaultKv:
    mount: str
    paths: tuple[str, ...]
    version: int = 2


@dataclass(frozen=True)
class DatabaseEnvironment:
    """A Vault database-engine connection and the objects the tiers are granted on."""

    mount: str
    connection: str
    objects: tuple[str, ...]
    roles: Mapping[TierName, str]
    owner_role: str | None = None


@dataclass(frozen=True)
class Environment:
    name: str
    aws: AwsEnvironment | None = None
    vault: VaultKv | None = None
    database: DatabaseEnvironment | None = None

    def placeholders(self, region: str | None) -> dict[str, str]:
        values = {"env": self.name}
        if self.aws is not None:
            values["account"] = self.aws.account
        if region is not None:
            values["region"] = region
        return values


@dataclass(frozen=True)
class Requester:
    """An agent identity allowed to request the scope: an exact subject or claim globs."""

    subject: str | None = None
    claims: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Freeze:
    """A change-freeze window: a fixed range, or a weekly recurring window, in a time zone."""

    name: str
    tiers: tuple[TierName, ...]
    timezone: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    days: tuple[int, ...] = ()  # 0 = Monday, as datetime.weekday()
    start_time: dt.time | None = None
    end_time: dt.time | None = None  # None with a recurring window means "until midnight"


@dataclass(frozen=True)
class Scope:
    service: str
    description: str
    requesters: tuple[Requester, ...]
    environments: Mapping[str, Environment]
    tiers: Mapping[TierName, Tier]
    freezes: tuple[Freeze, ...] = ()
    owners: tuple[str, ...] = ()
    source: str = ""

    def statements(self, tier: TierName) -> tuple[AwsStatement, ...]:
        """Every AWS statement a tier grants, the lower tiers' included."""
        result: list[AwsStatement] = []
        for name in tiers_up_to(tier):
            if name in self.tiers:
                result.extend(self.tiers[name].aws)
        return tuple(result)
