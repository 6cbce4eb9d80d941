"""The scope model: what the platform team declared, as frozen values.

A scope is one service. Tiers are cumulative: ``write`` grants what ``read`` grants plus
its own statements, ``delete`` grants what ``write`` grants plus its own. Each field is
declared once, with its YAML key, type and bounds (:mod:`broker.schema`): the loader
validates files against these declarations; code that builds values directly is trusted.
Nothing in this module does I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator
from pydantic_core import InitErrorDetails

from broker.schema import (
    KEY,
    NOT_IN_FILE,
    Declared,
    Duration,
    Entries,
    Flag,
    Integer,
    Keyed,
    Seconds,
    Text,
    alias,
    problem,
    section,
)

# Defined with the field types, and part of the model.
from broker.scopes.fields import TIERS as TIERS
from broker.scopes.fields import (
    Account,
    Action,
    DatabaseRole,
    Days,
    FreezeTier,
    Instant,
    IssuerName,
    Name,
    NeedsRead,
    NoParentStep,
    Rate,
    Region,
    Resource,
    RoleArn,
    SlackChannel,
    SqlIdentifier,
    SqlObject,
    StripSlashes,
    TimeZone,
    VaultMount,
    VaultPath,
    a_sentence,
    claims_not_blank,
    placeholders,
    time_of_day,
)
from broker.scopes.fields import RateLimit as RateLimit
from broker.scopes.fields import TierName as TierName

ESCALATED_TIERS: tuple[TierName, ...] = ("write", "delete")
Backend = Literal["aws", "vault", "database"]
BACKENDS: tuple[Backend, ...] = ("aws", "vault", "database")
IntentRule = Literal["required", "optional"]

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
class AwsStatement(Declared):
    """Actions and resource patterns (with ${env}/${region}/${account} placeholders)."""

    actions: Annotated[tuple[Annotated[str, Action], ...], Entries()]
    resources: Annotated[
        tuple[Annotated[str, Resource, placeholders(*PLACEHOLDERS)], ...], Entries()
    ]
    position: Annotated[Position | None, alias(NOT_IN_FILE)] = field(default=None, compare=False)


@dataclass(frozen=True)
class ApproverSet(Declared):
    """Some people (named, or by group) and how many distinct ones of them must approve."""

    approvers: Annotated[tuple[str, ...], Entries()] = ()
    groups: Annotated[tuple[str, ...], Entries()] = ()
    required: Annotated[int, Integer(1, 10)] = 1

    def problems(self) -> Iterator[InitErrorDetails]:
        if not self.approvers and not self.groups:
            yield problem("must name approvers or groups")

    def describe(self) -> str:
        names = [*self.groups, *self.approvers]
        return f"{self.required} of {' or '.join(names)}"


@dataclass(frozen=True)
class Approval(Declared):
    """Who may approve an escalation to a tier, how many must, and how long to wait.

    Either one set of people (``approvers``/``groups`` and ``required``), or ``all_of``:
    several sets that must all be satisfied at once, each by its own distinct people ("1
    of payments-leads AND 1 of sre-oncall": one person in both groups counts for one).
    """

    approvers: Annotated[tuple[str, ...], Entries()] = ()
    groups: Annotated[tuple[str, ...], Entries()] = ()
    required: Annotated[int, Integer(1, 10)] = 1
    all_of: Annotated[tuple[ApproverSet, ...], Entries(unique=False)] = ()
    delay_seconds: Annotated[int, alias("delay"), Seconds] = 0
    allow_slack_approval: Annotated[bool, Flag] = True
    pending_expiry_seconds: Annotated[int, alias("pending_expiry"), Duration(60, 7 * 86400)] = 1800
    channel: Annotated[str | None, SlackChannel] = None
    # A delete tier with fewer than 2 approvals is refused unless this states why.
    unsafe_single_approver: Annotated[str | None, Text(), AfterValidator(a_sentence)] = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        if "all_of" in data:
            for key in ("approvers", "groups", "required"):
                if key in data:
                    yield problem(
                        f"'{key}' goes inside each entry of all_of, not beside it", key, key=True
                    )
                    del data[key]

    def problems(self) -> Iterator[InitErrorDetails]:
        if not self.all_of and not self.approvers and not self.groups:
            yield problem("must name approvers or groups (or all_of)")
        if sum(s.required for s in self.all_of) > 10:
            yield problem("requires more than 10 approvals in all", "all_of")

    @property
    def sets(self) -> tuple[ApproverSet, ...]:
        """The sets of people that must all approve (one for the simple form)."""
        if self.all_of:
            return self.all_of
        return (ApproverSet(self.approvers, self.groups, self.required),)

    @property
    def total_required(self) -> int:
        """Distinct approvals needed in all."""
        return sum(s.required for s in self.sets)

    @property
    def named_approvers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a for s in self.sets for a in s.approvers))

    @property
    def named_groups(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g for s in self.sets for g in s.groups))

    def describe_sets(self) -> str:
        """'2 of sre-oncall', or '1 of payments-leads and 1 of sre-oncall'."""
        return " and ".join(s.describe() for s in self.sets)


@dataclass(frozen=True)
class EscalationException(Declared):
    """An action that opens an escalation path (:mod:`broker.policy.escalation`), granted
    on purpose: named exactly, why, and who reviewed it. Shown in red by ``broker scopes
    plan`` and on the approval page."""

    action: Annotated[str, Text(r"[a-z0-9-]+:[A-Za-z0-9]+", "one action, e.g. iam:PassRole")]
    reason: Annotated[str, Text(), AfterValidator(a_sentence)]
    reviewed_by: Annotated[str, Text(max_length=200)]


# What a delete tier's approval is unless it says otherwise: two people, a delay, no Slack.
DELETE_APPROVAL_DEFAULTS = {"required": 2, "delay": 600, "allow_slack_approval": False}


@dataclass(frozen=True)
class Tier(Declared):
    name: Annotated[TierName, alias(KEY)]
    ttl_seconds: Annotated[int, alias("ttl"), Seconds]
    aws: Annotated[tuple[AwsStatement, ...], Entries(allow_empty=True, unique=False)] = ()
    approval: Approval | None = None
    max_resources: Annotated[int | None, Integer(1, 1000)] = None
    rate_limit: Annotated[RateLimit | None, Rate] = None
    vault_num_uses: Annotated[int, Integer(0), section("vault", "num_uses")] = 0
    # Intents (docs/intents.md): "required" refuses write/delete requests without one.
    intent: Annotated[IntentRule, Text("required|optional", "required or optional")] = "optional"
    # At most this many destructive operations (and destroying changes) in one intent.
    max_destructive: Annotated[int | None, Integer(0, 10_000)] = None
    # Actions opening an escalation path granted on purpose (lint escalation-action).
    escalation_exceptions: Annotated[
        tuple[EscalationException, ...], Entries(allow_empty=True, unique=False)
    ] = ()

    def problems(self) -> Iterator[InitErrorDetails]:
        if self.name == "read" and self.intent == "required":
            yield problem(
                "tier 'read' is granted at once: 'intent: required' applies to write and delete",
                "intent",
                sentence=True,
            )
        if self.name != "delete" and self.max_destructive is not None:
            # Any destructive operation makes an intent need the delete tier: the cap of
            # another tier would never apply, and a reader would think it does.
            yield problem(
                f"tier '{self.name}' never receives a destructive intent (those need tier "
                "delete): put max_destructive in tier delete",
                "max_destructive",
                sentence=True,
            )

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        name = data.get(KEY)
        where = f"tier '{name}'"
        if name not in TIERS:
            return  # refused as a key of tiers
        if name == "read" and "approval" in data:
            yield problem(
                f"{where} is granted at once: it takes no approval", "approval", sentence=True
            )
            del data["approval"]
        elif name != "read" and "approval" not in data:
            yield problem(
                f"{where} needs an 'approval' block (who may approve, how many)", sentence=True
            )
        if name == "delete" and isinstance(data.get("approval"), dict):
            defaults = dict(DELETE_APPROVAL_DEFAULTS)
            if "all_of" in data["approval"]:
                del defaults["required"]  # each set says how many of its people
            data["approval"] = {**defaults, **data["approval"]}


@dataclass(frozen=True)
class AwsEnvironment(Declared):
    account: Annotated[str, Account]
    regions: Annotated[tuple[Annotated[str, Region], ...], Entries()]
    roles: Annotated[Mapping[TierName, Annotated[str, RoleArn]], NeedsRead]


@dataclass(frozen=True)
class VaultKv(Declared):
    mount: Annotated[str, VaultMount, StripSlashes]
    paths: Annotated[
        tuple[Annotated[str, VaultPath, placeholders("env"), NoParentStep], ...], Entries()
    ]
    version: Annotated[int, Integer(1, 2)] = 2


@dataclass(frozen=True)
class DatabaseEnvironment(Declared):
    """A Vault database-engine connection and the objects the tiers are granted on."""

    mount: Annotated[str, VaultMount, StripSlashes]
    connection: Annotated[str, DatabaseRole]
    objects: Annotated[tuple[Annotated[str, SqlObject], ...], Entries()]
    roles: Annotated[Mapping[TierName, Annotated[str, DatabaseRole]], NeedsRead]
    owner_role: Annotated[str | None, SqlIdentifier] = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        data.setdefault("mount", "database")
        return iter(())


@dataclass(frozen=True)
class Environment(Declared):
    name: Annotated[str, alias(KEY)]
    aws: AwsEnvironment | None = None
    vault: Annotated[VaultKv | None, section("vault", "kv")] = None
    database: DatabaseEnvironment | None = None

    def placeholders(self, region: str | None) -> dict[str, str]:
        values = {"env": self.name}
        if self.aws is not None:
            values["account"] = self.aws.account
        if region is not None:
            values["region"] = region
        return values

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        if not set(data) - {KEY}:
            yield problem("must configure at least one of aws, vault, database")
        if isinstance(data.get("vault"), dict) and "kv" not in data["vault"]:
            yield problem(": missing required key 'kv'", "vault")


@dataclass(frozen=True)
class Requester(Declared):
    """An agent identity allowed to request the scope: an exact subject or claim globs.

    The identity's issuer is part of the match: ``issuer`` names a configured issuer; an
    entry without it means the broker's own (local) issuer, unless its claims pin ``iss``
    to one issuer's address exactly.
    """

    subject: Annotated[str | None, Text()] = None
    claims: Annotated[Mapping[str, Annotated[str, Text()]], AfterValidator(claims_not_blank)] = (
        field(default_factory=dict)
    )
    issuer: Annotated[str | None, IssuerName] = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        if ("subject" in data) == ("claims" in data):
            yield problem("needs exactly one of 'subject' or 'claims'")
        elif data.get("claims") == {}:
            yield problem("must not be empty", "claims")

    def problems(self) -> Iterator[InitErrorDetails]:
        iss = self.claims.get("iss")
        if iss is not None and any(c in iss for c in "*?["):
            yield problem(
                f"claim 'iss' is a pattern ('{iss}'): it must name one issuer exactly (write "
                "one requester per issuer)",
                "claims",
                "iss",
                sentence=True,
            )


@dataclass(frozen=True)
class Freeze(Declared):
    """A change-freeze window: a fixed range, or a weekly recurring window, in a time zone."""

    name: Annotated[str, Text(max_length=80)]
    tiers: Annotated[tuple[Annotated[TierName, FreezeTier], ...], Entries()]
    timezone: Annotated[str, Text(), TimeZone]
    start: Annotated[dt.datetime | None, Instant] = None
    end: Annotated[dt.datetime | None, Instant] = None
    days: Annotated[tuple[int, ...], Days, section("recurring", "days")] = ()  # 0: Monday
    start_time: Annotated[dt.time | None, time_of_day(end=False), section("recurring", "start")] = (
        None
    )
    # None with a recurring window means "until midnight".
    end_time: Annotated[dt.time | None, time_of_day(end=True), section("recurring", "end")] = None

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        data.setdefault("tiers", ["write", "delete"])
        ranged = "start" in data or "end" in data
        if ranged == ("recurring" in data):
            yield problem("needs either start and end, or recurring")
        elif ranged:
            for key in ("start", "end"):
                if key not in data:
                    yield problem(f": missing required key '{key}'")
        elif isinstance(data["recurring"], dict):
            for key in ("days", "start", "end"):
                if key not in data["recurring"]:
                    yield problem(f": missing required key '{key}'", "recurring")

    def problems(self) -> Iterator[InitErrorDetails]:
        if self.start is not None and self.end is not None and self.end <= self.start:
            yield problem("must be after its start", "end")


@dataclass(frozen=True)
class Scope(Declared):
    service: Annotated[str, Name, section("metadata", "service")]
    description: Annotated[str, Text(), section("metadata", "description")]
    requesters: Annotated[tuple[Requester, ...], Entries(unique=False)]
    environments: Annotated[Mapping[Annotated[str, Name], Environment], Keyed]
    tiers: Annotated[Mapping[TierName, Tier], Keyed, NeedsRead]
    freezes: Annotated[tuple[Freeze, ...], Entries(allow_empty=True, unique=False)] = ()
    owners: Annotated[tuple[str, ...], Entries(), section("metadata", "owners")] = ()
    source: Annotated[str, alias(NOT_IN_FILE)] = ""

    REQUIRED: ClassVar[tuple[str, ...]] = ("apiVersion", "kind", "metadata")
    HEADER: ClassVar[dict[str, str]] = {"apiVersion": "broker/v1", "kind": "Scope"}

    def statements(self, tier: TierName) -> tuple[AwsStatement, ...]:
        """Every AWS statement a tier grants, the lower tiers' included."""
        result: list[AwsStatement] = []
        for name in tiers_up_to(tier):
            if name in self.tiers:
                result.extend(self.tiers[name].aws)
        return tuple(result)

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        metadata = data.get("metadata")
        if isinstance(metadata, dict):
            metadata.setdefault("description", "")
        yield from ()

    def problems(self) -> Iterator[InitErrorDetails]:
        if not self.environments:
            yield problem("must declare at least one environment", "environments")
        names: set[str] = set()
        for index, freeze in enumerate(self.freezes):
            if freeze.name in names:
                yield problem(f"duplicate freeze name '{freeze.name}'", "freezes", index, key=True)
            names.add(freeze.name)
