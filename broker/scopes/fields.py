"""The field types of scope files: names, ARNs, globs, rate limits, freeze times.

Each is ``Annotated`` metadata for a field of :mod:`broker.scopes.model` (see
:mod:`broker.schema`): it refuses what the platform team must not write, in the words the
scope validator has always used, and turns text into the model's values ("10/h" into a
:class:`RateLimit`, "mon" into 0).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AfterValidator, PlainValidator, ValidationInfo

from broker.policy.globs import placeholders_in
from broker.schema import Text, problem, refuse

TierName = Literal["read", "write", "delete"]
TIERS: tuple[TierName, ...] = ("read", "write", "delete")


@dataclass(frozen=True)
class RateLimit:
    count: int
    per_seconds: int

    def __str__(self) -> str:
        unit = {3600: "h", 86400: "d", 60: "m", 1: "s"}.get(self.per_seconds)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per_seconds}s"


NAME = "[a-z][a-z0-9-]{0,39}"
Name = Text(NAME, "lower-case letters, digits and '-', starting with a letter, at most 40")
Account = Text("[0-9]{12}", "a quoted string of 12 digits; unquoted numbers lose leading zeros")
Region = Text("[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]", "an AWS region such as us-east-1")
RoleArn = Text(
    r"arn:(?:aws|aws-cn|aws-us-gov):iam::(?:\$\{account\}|[0-9]{12}):role/[\w+=,.@/-]{1,512}",
    "an IAM role ARN: arn:aws:iam::<account>:role/<name>",
)
Action = Text(r"\*|[a-z0-9-]+:[A-Za-z0-9*?]+", "service:Action, e.g. s3:GetObject")
# No whitespace, quotes, backslashes or control characters in a resource pattern.
Resource = Text(r"[^\s\"'\\\x00-\x1f\x7f]+", "an ARN pattern without spaces or quotes")
VaultMount = Text("[A-Za-z0-9_-][A-Za-z0-9_./-]*")
# Vault ACL globs: '+' stands for one path segment, '*' only at the very end (a prefix).
VaultPath = Text(
    r"[A-Za-z0-9_.${}+-][A-Za-z0-9_./${}+-]*\*?",
    "a KV path such as payments/${env}/* (no leading '/')",
)
SqlIdentifier = Text("[a-z_][a-z0-9_$]{0,62}", "a role name")
SqlObject = Text(
    r"[a-z_][a-z0-9_$]{0,62}\.(?:[a-z_][a-z0-9_$]{0,62}|\*)",
    "schema.table or schema.* in lower case",
)
DatabaseRole = Text("[A-Za-z0-9][A-Za-z0-9_-]{0,62}", "a Vault database role name")
# A configured identity issuer's name ("local" is the broker's own); see broker.config.
IssuerName = Text("[a-z][a-z0-9_.-]{0,63}", "an issuer's name from the broker config")
SlackChannel = Text("[#@]?[A-Za-z0-9._-]{1,80}", "a Slack channel")
FreezeTier = Text("write|delete", "write or delete")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_RATE = re.compile(r"([0-9]{1,6})/([0-9]*)([smhd])")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")


def _unknown_placeholder(name: str, known: str) -> str:
    if ":" in name:  # ${aws:username}, ${s3:prefix}, ${saml:sub}...: IAM's, not ours
        return (
            f"'${{{name}}}' is an IAM policy variable: AWS would evaluate it against the role "
            "session the broker issues, never the agent (a role session has no aws:username "
            "at all), and the broker names each request's exact resources instead; write the "
            f"resource without it, with the broker's placeholders ({known}) where they fit"
        )
    return f"unknown placeholder '${{{name}}}' (known: {known})"


def placeholders(*allowed: str) -> AfterValidator:
    """An entry's ${...} placeholders must be among ``allowed``."""
    known = ", ".join("${" + p + "}" for p in allowed)

    def check(value: str) -> str:
        errors = [
            problem(_unknown_placeholder(name, known), key=True)
            for name in placeholders_in(value)
            if name not in allowed
        ]
        if "$" in value.replace("${", ""):
            errors.append(problem("stray '$' (placeholders are written ${name})", key=True))
        if errors:
            raise refuse(*errors)
        return value

    return AfterValidator(check)


def _no_parent_step(value: str) -> str:
    if ".." in value.split("/"):
        raise refuse(problem("'..' is not allowed", key=True))
    return value


NoParentStep = AfterValidator(_no_parent_step)
StripSlashes = AfterValidator(lambda mount: mount.strip("/"))


def _rate(value: object) -> RateLimit:
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise refuse(problem("must be count/period such as 10/h or 2/d"))
    count, multiple = int(match.group(1)), int(match.group(2) or 1)
    if count == 0 or multiple == 0:
        raise refuse(problem("must allow at least one request per period"))
    return RateLimit(count=count, per_seconds=multiple * _SECONDS_PER_UNIT[match.group(3)])


Rate = PlainValidator(_rate)


def _time_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise refuse(problem(f"'{value}' is not a known time zone")) from None
    return value


TimeZone = AfterValidator(_time_zone)


def _instant(value: object, info: ValidationInfo) -> dt.datetime:
    """A date and time, in the freeze's time zone unless it names its own offset."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            value = None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise refuse(problem("must be a date and time such as 2026-12-20T00:00"))
    zone = info.data.get("timezone") if isinstance(info.data, Mapping) else None
    if value.tzinfo is None and isinstance(zone, str):
        value = value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    return value


Instant = PlainValidator(_instant)


def _days(value: object) -> tuple[int, ...]:
    """Day names ('mon'...) as datetime's weekday numbers, sorted."""
    if not isinstance(value, list) or not value:
        raise refuse(problem("must be a non-empty list of days"))
    hint = ", ".join(DAYS)
    errors = [
        problem(f"'{day}' is invalid: one of {hint}", index)
        for index, day in enumerate(value)
        if day not in DAYS
    ]
    if errors:
        raise refuse(*errors)
    return tuple(sorted({DAYS.index(day) for day in value}))


Days = PlainValidator(_days)


def time_of_day(end: bool) -> PlainValidator:
    """'HH:MM'; '24:00' (midnight at the end of the day) only for an ``end``, as None."""

    def check(value: object) -> dt.time | None:
        if not isinstance(value, str) or not _TIME_OF_DAY.fullmatch(value):
            raise refuse(problem("must be HH:MM, 00:00 to 24:00"))
        if value == "24:00":
            if not end:
                raise refuse(problem("must be 00:00 to 23:59"))
            return None
        hours, minutes = value.split(":")
        return dt.time(int(hours), int(minutes))

    return PlainValidator(check)


def a_sentence(reason: str | None) -> str | None:
    if reason is not None and len(reason.strip()) < 10:
        raise refuse(problem("must explain why, in a sentence"))
    return reason


def claims_not_blank(claims: Mapping[str, str]) -> Mapping[str, str]:
    errors = [
        problem(
            f"claim '{key}' must not be empty: an empty pattern would only match tokens "
            "lacking the claim",
            key,
            sentence=True,
        )
        for key, value in claims.items()
        if not value.strip()
    ]
    if errors:
        raise refuse(*errors)
    return claims


def in_tier_order(value: Mapping[Any, Any]) -> dict[Any, Any]:
    """A per-tier mapping, read first (the order the rest of the broker expects)."""
    return {tier: value[tier] for tier in TIERS if tier in value}


def needs_read(value: Mapping[Any, Any]) -> Mapping[Any, Any]:
    if "read" not in value:
        raise refuse(problem(": missing required key 'read'"))
    return in_tier_order(value)


NeedsRead = AfterValidator(needs_read)
