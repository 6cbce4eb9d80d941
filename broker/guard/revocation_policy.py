"""The revocation policy on a tier role: deny statements for revoked sessions, kept small. Pure.

AWS cannot revoke one STS session. The broker denies, on the tier role, every session
issued before a cut-off (``aws:TokenIssueTime``), narrowed to an agent (its SourceIdentity)
or a request (its ``broker:request-id`` session tag), or not narrowed (a service, or
everything). The statements live in one inline policy, which shares IAM's 10,240-character
budget per role with the tier's own permissions; this module keeps them within it:

1. **Pruned**: a statement whose cut-off is older than the role's longest possible session
   matches nothing any more.
2. **Merged losslessly**: an unnarrowed cut-off covers every narrowed one before it;
   statements with the same cut-off and condition key become one with a list of values;
   request ids all share the latest cut-off (a request gets no new session after it was
   revoked, so nothing legitimate is denied by the later time).
3. **Coarsened, failing closed**, only when still too large: agents' statements share the
   latest agent cut-off (an agent revoked earlier, and unfrozen since, loses sessions issued
   between its own cut-off and that one: it asks again); then one unnarrowed deny at the
   latest cut-off replaces them all (every session of the role issued before it is
   refused, other agents' too: they ask again). Never fewer denials.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REVOCATION_POLICY_NAME = "broker-revoked-sessions"
ROLE_INLINE_MAX_CHARS = 10240  # IAM's quota on a role's inline policies, white space not counted
MAX_SESSION_SECONDS = 12 * 3600  # the longest session STS issues on any role
AGENT_KEY = "aws:SourceIdentity"
REQUEST_KEY = "aws:PrincipalTag/broker:request-id"
ISSUE_TIME = "aws:TokenIssueTime"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Denial:
    """Sessions issued before ``cutoff`` (whole seconds) whose ``key`` is one of ``values``
    (``key`` None: every session of the role)."""

    cutoff: int
    key: str | None = None
    values: frozenset[str] = frozenset()

    def covers(self, other: Denial) -> bool:
        """True when every session ``other`` denies is denied by this one too."""
        if self.cutoff < other.cutoff:
            return False
        return self.key is None or (self.key == other.key and other.values <= self.values)


def cutoff_for(revoked_at: float, in_flight_seconds: float) -> int:
    """The cut-off written for a revocation at ``revoked_at``: never earlier than it.

    ``aws:TokenIssueTime`` has whole seconds and ``DateLessThan`` is strict, so the time is
    rounded up; it is pushed past ``in_flight_seconds`` (how stale a replica's view of the
    freezes may be, plus the longest upstream call) so a session minted by another replica
    that had not seen the freeze yet is denied too.
    """
    return math.ceil(revoked_at + in_flight_seconds)


def statement(denial: Denial) -> dict[str, Any]:
    when = dt.datetime.fromtimestamp(denial.cutoff, dt.UTC).strftime(TIME_FORMAT)
    condition: dict[str, Any] = {"DateLessThan": {ISSUE_TIME: when}}
    kind = "All"
    if denial.key is not None:
        values = sorted(denial.values)
        condition["StringEquals"] = {denial.key: values[0] if len(values) == 1 else values}
        kind = "Agents" if denial.key == AGENT_KEY else "Requests"
    sid = f"Revoke{kind}{denial.cutoff}"
    return {"Sid": sid, "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition}


def parse(document: Mapping[str, Any] | None) -> tuple[list[Denial], list[dict[str, Any]]]:
    """The broker's denials in a policy, and statements it did not write (kept as they are)."""
    denials: list[Denial] = []
    foreign: list[dict[str, Any]] = []
    for raw in (document or {}).get("Statement", []):
        denial = _denial(raw)
        if denial is None:
            foreign.append(dict(raw))
        else:
            denials.append(denial)
    return denials, foreign


def _denial(raw: Mapping[str, Any]) -> Denial | None:
    if raw.get("Effect") != "Deny" or raw.get("Action") != "*" or raw.get("Resource") != "*":
        return None
    condition = dict(raw.get("Condition") or {})
    before = (condition.pop("DateLessThan", None) or {}).get(ISSUE_TIME)
    try:
        when = dt.datetime.strptime(str(before), TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    cutoff = int(when.timestamp())
    equals = condition.pop("StringEquals", None)
    if condition:
        return None
    if equals is None:
        return Denial(cutoff)
    if len(equals) != 1:
        return None
    [(key, value)] = equals.items()
    if key not in (AGENT_KEY, REQUEST_KEY):
        return None
    values = [value] if isinstance(value, str) else list(value)
    return Denial(cutoff, key, frozenset(str(v) for v in values))


def size(document: Mapping[str, Any]) -> int:
    """A policy's size as IAM counts it (white space not counted)."""
    return len(_WHITESPACE.sub("", json.dumps(document, separators=(",", ":"))))


def document(denials: Iterable[Denial], foreign: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    ordered = sorted(denials, key=lambda d: (d.key or "", d.cutoff))
    return {"Version": "2012-10-17", "Statement": [*foreign, *map(statement, ordered)]}


@dataclass(frozen=True)
class Compacted:
    """The policy to write, and what coarsening cost (empty: nothing legitimate is denied)."""

    document: dict[str, Any]
    collateral: str = ""


class DoesNotFit(Exception):
    """Even one unnarrowed deny does not fit beside the role's other inline policies."""


def merge(
    existing: Mapping[str, Any] | None,
    added: Denial,
    now: float,
    budget: int = ROLE_INLINE_MAX_CHARS,
    max_session_seconds: int = MAX_SESSION_SECONDS,
) -> Compacted:
    """The role's revocation policy with ``added``, pruned, merged and, if it must be,
    coarsened (fail closed) to fit ``budget`` characters."""
    denials, foreign = parse(existing)
    horizon = now - max_session_seconds
    live = [d for d in [*denials, added] if d.cutoff > horizon]
    merged = _lossless(live)
    compacted = document(merged, foreign)
    if size(compacted) <= budget:
        return Compacted(compacted)
    agents = [d for d in merged if d.key == AGENT_KEY]
    others = [d for d in merged if d.key != AGENT_KEY]
    if agents:
        values = frozenset().union(*(d.values for d in agents))
        coarse = _lossless([*others, Denial(max(d.cutoff for d in agents), AGENT_KEY, values)])
        compacted = document(coarse, foreign)
        if size(compacted) <= budget:
            return Compacted(
                compacted,
                f"agents revoked before {_iso(max(d.cutoff for d in agents))} lose sessions "
                "issued since their own revocation (they ask again)",
            )
    latest = max(d.cutoff for d in merged)
    compacted = document([Denial(latest)], foreign)
    if size(compacted) > budget:
        raise DoesNotFit(
            f"the role's other inline policies leave {budget - size(document([], foreign))} "
            "characters: not even one deny statement fits"
        )
    return Compacted(
        compacted,
        f"every session of this role issued before {_iso(latest)} is denied, other agents' "
        "too (they ask again)",
    )


def _lossless(denials: Iterable[Denial]) -> list[Denial]:
    """The same denials in as few statements as possible, without denying anything more
    than they do (request ids excepted: see the module's docstring)."""
    denials = list(denials)
    unnarrowed = max((d.cutoff for d in denials if d.key is None), default=None)
    result = [] if unnarrowed is None else [Denial(unnarrowed)]
    narrowed = [d for d in denials if d.key is not None and not (result and result[0].covers(d))]
    requests = [d for d in narrowed if d.key == REQUEST_KEY]
    if requests:
        ids = frozenset().union(*(d.values for d in requests))
        result.append(Denial(max(d.cutoff for d in requests), REQUEST_KEY, ids))
    # An agent denied at a later cut-off needs no earlier statement of its own.
    latest: dict[str, int] = {}
    for denial in narrowed:
        if denial.key == AGENT_KEY:
            for value in denial.values:
                latest[value] = max(latest.get(value, denial.cutoff), denial.cutoff)
    grouped: dict[int, set[str]] = {}
    for value, cutoff in latest.items():
        grouped.setdefault(cutoff, set()).add(value)
    result.extend(Denial(c, AGENT_KEY, frozenset(v)) for c, v in grouped.items())
    return result


def present(document: Mapping[str, Any] | None, wanted: Denial) -> bool:
    """True when the policy denies at least what ``wanted`` denies (read back after a put)."""
    denials, _ = parse(document)
    return any(d.covers(wanted) for d in denials)


def _iso(cutoff: int) -> str:
    return dt.datetime.fromtimestamp(cutoff, dt.UTC).strftime(TIME_FORMAT)
