"""May this agent have this now, and may this approver decide this? Pure decisions as values.

Each function here takes everything it needs as plain values (the resolved request, the
freezes in force, counts already taken, the rule in force, the time) and returns a value:
:class:`Allow`, :class:`NeedsApproval` or :class:`Deny` for an agent's request,
:class:`Accept` or :class:`Refuse` for an approver's decision. No I/O happens here: the
guard and the services gather the inputs, act on the value and record the outcome.

Every refusal the broker gives about a request in flight (freezes, change freezes, rate
limits, approval rules, collection) is written here, once, with its stable code; its
:meth:`Refusal.error` is what reaches the client through the one error handler. What is
refused while a request is read and resolved against the scopes (malformed, unknown, out of
scope) is said by :mod:`broker.intake`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from broker.config import Approver
from broker.errors import (
    BadRequest,
    BrokerError,
    ChangeFreeze,
    Conflict,
    Forbidden,
    Frozen,
    Gone,
    NotFound,
    RateLimited,
    RequestNotReady,
    ResourcesRequired,
)
from broker.guard.windows import active_window, describe_window
from broker.identity.model import AgentIdentity
from broker.policy import quorum
from broker.policy.quorum import PeopleSet
from broker.policy.requester import is_requester
from broker.scopes.model import Approval, RateLimit, Scope
from broker.store.records import ApprovalRecord, FreezeRecord, RequestRecord
from broker.yamldoc import format_duration

if TYPE_CHECKING:  # not imported at run time: the kill switch needs none of the intake
    from broker.intake import ResolvedRequest

Ballot = Literal["approve", "deny"]
OPEN_STATES = ("pending", "approved")


# -- the values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A refusal: its stable code (the API's ``error``), a sentence, and what goes with it."""

    code: str
    reason: str
    window: str | None = None  # change_freeze: the window's name
    retry_after: int | None = None  # rate_limited: seconds

    def error(self) -> BrokerError:
        """The exception that carries this refusal to the client (status and body)."""
        if self.code == "frozen":
            return Frozen(self.reason)
        if self.code == "change_freeze":
            return ChangeFreeze(self.reason, self.window or "")
        if self.code == "rate_limited":
            return RateLimited(self.reason, self.retry_after or 1)
        plain: dict[str, type[BrokerError]] = {
            "forbidden": Forbidden,
            "conflict": Conflict,
            "not_ready": RequestNotReady,
            "gone": Gone,
            "not_found": NotFound,
            "bad_request": BadRequest,
        }
        return plain[self.code](self.reason)


@dataclass(frozen=True)
class Deny(Refusal):
    """The agent does not get what it asked for."""


@dataclass(frozen=True)
class Refuse(Refusal):
    """The approver's decision is not recorded."""


@dataclass(frozen=True)
class Allow:
    """Issue now."""


@dataclass(frozen=True)
class NeedsApproval:
    """Open a request that waits for ``rule``'s approvers."""

    rule: Approval


@dataclass(frozen=True)
class Accept:
    """Record the approver's decision."""


RequestDecision = Allow | Deny | NeedsApproval
ApprovalDecision = Accept | Refuse


@dataclass(frozen=True)
class RateCount:
    """A rate-limit slot asked for in the shared store: taken or not, and the window's
    state when asked (events before this one, the oldest of them)."""

    limit: RateLimit
    taken: bool
    count: int
    oldest: float | None


@dataclass(frozen=True)
class Counters:
    """Counts taken for this request (None: no rate limit applies, or nothing was counted)."""

    rate: RateCount | None = None


@dataclass(frozen=True)
class RuleInForce:
    """A request's approval rule as the scopes say now, and who may decide it now: its sets
    of people resolved (members named directly or through groups, each set's count)."""

    scope: Scope
    rule: Approval
    eligible: frozenset[str]
    sets: tuple[PeopleSet, ...] = ()


# -- an agent's request ---------------------------------------------------------------


def matching_freeze(
    freezes: Iterable[FreezeRecord], principal: str, service: str | None, environment: str | None
) -> FreezeRecord | None:
    """The first freeze that stops the agent ``principal`` (issuer and subject, see
    :mod:`broker.identity.model`) or the service/environment, if any."""
    for freeze in freezes:
        if freeze.kind == "all":
            return freeze
        if freeze.kind == "agent" and freeze.target == principal:
            return freeze
        if freeze.kind == "scope" and service is not None:
            if freeze.target in (service, f"{service}/{environment}"):
                return freeze
    return None


def refusal_before_counting(
    resolved: ResolvedRequest,
    identity: AgentIdentity,
    freezes: Iterable[FreezeRecord],
    now: float,
) -> Deny | None:
    """What stops a request before anything is counted for it (a frozen or change-frozen
    request must not use up its agent's rate, nor count towards the circuit breaker)."""
    request = resolved.request
    freeze = matching_freeze(freezes, identity.principal, request.service, request.environment)
    if freeze is not None:
        until = "until an operator runs `broker unfreeze`"
        if freeze.lifted_at is not None:  # unfrozen, effective once the AWS cut-off passed
            until = f"for {math.ceil(freeze.lifted_at - now)} s more (unfrozen)"
        return Deny(
            "frozen", f"frozen: {freeze.describe()} ({freeze.reason}); nothing is issued {until}"
        )
    if resolved.escalated:
        window = active_window(resolved.scope, request.tier, now)
        if window is not None:
            return Deny(
                "change_freeze",
                f"change freeze {describe_window(window)} is in effect for "
                f"{request.tier} requests of {request.service}",
                window=window.name,
            )
    return None


def decide_request(
    resolved: ResolvedRequest,
    identity: AgentIdentity,
    freezes: Iterable[FreezeRecord],
    counters: Counters,
    now: float,
) -> RequestDecision:
    """May ``identity`` have ``resolved`` now: at once (read), after approval, or not."""
    refused = refusal_before_counting(resolved, identity, freezes, now)
    if refused is not None:
        return refused
    rate = counters.rate
    if rate is not None and not rate.taken:
        request = resolved.request
        return Deny(
            "rate_limited",
            f"rate limit {rate.limit} for {request.tier} requests of "
            f"{request.service} reached ({rate.count} in the window)",
            retry_after=int((rate.oldest or now) + rate.limit.per_seconds - now) + 1,
        )
    if not resolved.escalated:
        return Allow()
    if resolved.tier.approval is None:  # the loader never lets this through: fail closed
        return Deny("forbidden", f"tier {resolved.request.tier} has no approval rule")
    return NeedsApproval(resolved.tier.approval)


def breaker_event(error: BrokerError) -> str | None:
    """What a refusal counts as for the circuit breaker: out of scope, a plain denial, or
    nothing (a freeze or a rate limit already stopped the agent; counting those would only
    trip the breaker again; a write/delete naming no resources is the agent learning the API,
    not a runaway: the answer tells it what to add)."""
    if isinstance(error, Frozen | RateLimited | ResourcesRequired):
        return None
    if isinstance(error, Forbidden) and not isinstance(error, ChangeFreeze):
        return "out_of_scope"
    field = getattr(error, "field", None)
    if isinstance(error, BadRequest | NotFound) and field in ("resources", "service"):
        return "out_of_scope"
    return "denial"


# -- an approver's decision -----------------------------------------------------------


def not_an_approver(name: str) -> Refuse:
    return Refuse("forbidden", f"'{name}' is not a configured approver")


def not_eligible(approver: str, record: RequestRecord) -> Refuse:
    return Refuse(
        "forbidden", f"{approver} is not an approver for tier {record.tier} of {record.service}"
    )


def already_decided(record: RequestRecord) -> Refuse:
    return Refuse("conflict", f"this request is already {record.status}")


def second_ballot(first: ApprovalRecord) -> Refuse:
    """An approver's second decision on a request: the first one stands."""
    done = "approved" if first.decision == "approve" else "denied"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(first.created_at))
    return Refuse(
        "conflict", f"already {done}, not counted again ({first.approver} {done} at {when})"
    )


RULE_GONE = Refuse("forbidden", "the scope or tier of this request no longer exists")


REQUESTER_CANNOT_APPROVE = Refuse("forbidden", "the requester cannot approve its own request")


def not_an_approver_of(
    record: RequestRecord,
    approver: Approver,
    rule: RuleInForce | None,
    as_agents: frozenset[tuple[str, str]] = frozenset(),
) -> Refuse | None:
    """Why ``approver`` is not one of ``record``'s approvers under the rule in force (its
    tier's rule gone, the requester itself, not listed for the tier), or None.

    ``as_agents``: the agent identities the approver's sign-in is (see
    :func:`broker.policy.requester.agent_names_of`); none for a link, Slack or the CLI.
    """
    if rule is None:
        return RULE_GONE
    if is_requester(approver, record, as_agents):
        return REQUESTER_CANNOT_APPROVE
    if approver.name not in rule.eligible:
        return not_eligible(approver.name, record)
    return None


def decide_approval(
    record: RequestRecord,
    approver: Approver,
    ballot: Ballot,
    via: str,
    rule: RuleInForce | None,
    now: float,
    as_agents: frozenset[tuple[str, str]] = frozenset(),
) -> ApprovalDecision:
    """May ``approver`` cast ``ballot`` on ``record`` through ``via`` now, under ``rule``?
    (``as_agents``: the agent identities their sign-in is, as for :func:`not_an_approver_of`.)"""
    if record.status not in OPEN_STATES:
        return already_decided(record)
    outsider = not_an_approver_of(record, approver, rule, as_agents)
    if outsider is not None or rule is None:
        return outsider or RULE_GONE
    if ballot == "approve" and record.break_glass and via != "break-glass":
        # A link or a Slack click proves no OS user: break-glass takes two on the CLI.
        return Refuse(
            "forbidden", "break-glass requests are approved with `broker break-glass approve`"
        )
    if ballot == "approve" and via == "slack" and not rule.rule.allow_slack_approval:
        return Refuse(
            "forbidden",
            f"tier {record.tier} of {record.service} cannot be approved inside "
            "Slack; use the approval page",
        )
    if ballot == "approve" and not record.break_glass:
        window = active_window(rule.scope, record.tier, now)
        if window is not None:
            return Refuse(
                "change_freeze",
                f"approvals are refused during change freeze {describe_window(window)}",
                window=window.name,
            )
    return Accept()


def approvals_complete(needs: RuleNow, rule: RuleInForce, approvers: Sequence[str]) -> bool:
    """Do ``approvers`` approve under ``rule``: as many people who may still approve as the
    rule now needs (never fewer than when it was opened), and every set of the rule in
    force met by distinct people."""
    counted = {name for name in approvers if name in rule.eligible}
    return len(counted) >= needs.required and quorum.met(rule.sets, approvers)


def late_ballot(current: RequestRecord, ballot: Ballot) -> Refuse | None:
    """A ballot that arrives after the request left the state it may change (checked again
    with the request locked: another replica may have counted the last approval)."""
    if current.status not in OPEN_STATES or (ballot == "approve" and current.status != "pending"):
        return already_decided(current)
    return None


# -- a rule that became stricter -------------------------------------------------------


@dataclass(frozen=True)
class RuleNow:
    """What a request needs now: the stricter of the rule it was opened under (stored on
    it) and the scope's rule in force, and how many of its approvals still count."""

    required: int
    delay_seconds: int
    counted: int  # approvals from approvers who may still approve this tier
    tightened: tuple[str, ...]  # what became stricter, in words (empty: nothing)
    # The sets of the rule in force its approvals do not meet, in words ("1 more of
    # sre-oncall"; empty: every set met).
    unmet: tuple[str, ...] = ()

    @property
    def satisfied(self) -> bool:
        return self.counted >= self.required and not self.unmet

    def still_needed(self) -> str:
        """What the request waits for, in words."""
        if self.unmet:
            return ", ".join(self.unmet)
        return f"{self.required - self.counted} more approval(s)"

    def reason(self, record: RequestRecord) -> str:
        return (
            f"the approval rule for tier {record.tier} of {record.service} became stricter "
            f"since it was opened: {'; '.join(self.tightened)}"
        )


def rule_now(record: RequestRecord, rule: RuleInForce, approved_by: Iterable[str]) -> RuleNow:
    """Never looser than what the approvers were shown; stricter when the scope is now.

    More approvers, a longer delay, or approvers who may no longer approve (other groups)
    so that too few approvals count, tighten it. Break-glass keeps its own delay (none):
    it bypasses the tier's.
    """
    required = max(record.approvals_required, rule.rule.total_required)
    delay = record.delay_seconds
    if not record.break_glass:
        delay = max(delay, rule.rule.delay_seconds)
    approvers = list(dict.fromkeys(approved_by))
    gone = [name for name in approvers if name not in rule.eligible]
    tightened = []
    if required > record.approvals_required:
        tightened.append(f"{required} approvals instead of {record.approvals_required}")
    if delay > record.delay_seconds:
        tightened.append(
            f"a {format_duration(delay)} delay instead of {format_duration(record.delay_seconds)}"
        )
    if gone and len(approvers) - len(gone) < required:
        tightened.append(
            f"{', '.join(gone)} may no longer approve it, so "
            f"{'that approval no longer counts' if len(gone) == 1 else 'theirs no longer count'}"
        )
    # Sets regrouped (all_of) with the same count and the same people: the approvals may
    # still not be one per set, each from a different person.
    unmet = tuple(quorum.missing(rule.sets, approvers))
    if unmet and len(approvers) - len(gone) >= required and not tightened:
        tightened.append(
            f"its approvals no longer meet {rule.rule.describe_sets()} ({', '.join(unmet)})"
        )
    return RuleNow(required, delay, len(approvers) - len(gone), tuple(tightened), unmet)


# -- collecting approved credentials --------------------------------------------------

ALREADY_COLLECTED = Deny("gone", "these credentials were already collected")
NO_SUCH_REQUEST = Deny("not_found", "no such request")


def decide_collection(
    record: RequestRecord,
    approvals_received: int,
    freeze: FreezeRecord | None,
    now: float,
) -> Allow | Deny:
    """May the requesting agent collect ``record``'s credentials now (before the scope in
    force is consulted again)? ``freeze`` is the freeze that stops the agent, if any."""
    if record.status == "pending":
        return Deny(
            "not_ready",
            f"waiting for approvals ({approvals_received} of {record.approvals_required})",
        )
    if record.status == "denied":
        return Deny("forbidden", record.reason or "this request was denied")
    if record.status == "collected":
        return ALREADY_COLLECTED
    if record.status in ("expired", "cancelled"):
        return Deny("gone", f"this request is {record.status}")
    collectable_at = record.collectable_at or now
    if now < collectable_at:
        return Deny(
            "not_ready",
            f"approved; the mandatory delay ends in {math.ceil(collectable_at - now)} s",
        )
    if freeze is not None:
        return Deny("frozen", "frozen: nothing is issued until an operator runs `broker unfreeze`")
    return Allow()


def scope_changed(error: BrokerError) -> Deny:
    """The scope in force no longer grants what was approved."""
    return Deny(
        "forbidden",
        f"the scope changed since approval and no longer grants this request: {error.message}",
    )


def intent_tier_changed(approved: str, now_needed: str) -> Deny:
    """The intent's operations fall under another tier of the scope in force."""
    return Deny(
        "forbidden",
        f"the scope changed since approval: the intent now needs tier {now_needed}, not the "
        f"{approved} that was approved; request it again",
    )


def collection_window_refusal(
    resolved: ResolvedRequest, record: RequestRecord, now: float
) -> Deny | None:
    """A change freeze that began after approval stops collection (not for break-glass)."""
    if record.break_glass:
        return None
    window = active_window(resolved.scope, record.tier, now)
    if window is None:
        return None
    return Deny(
        "change_freeze",
        f"change freeze {describe_window(window)} is in effect",
        window=window.name,
    )
