"""The pure decisions: what an agent gets now, and whether an approver's ballot counts.

No server, no store: each case builds the inputs the guard or the approval service would
gather (freezes, counts, the rule in force) and reads the value that comes back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broker.config import Approver
from broker.errors import ChangeFreeze, Conflict, Forbidden, Frozen, RateLimited, RequestNotReady
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest, parse_request, resolve
from broker.policy.decision import (
    OPEN_STATES,
    Accept,
    Allow,
    Counters,
    Deny,
    NeedsApproval,
    RateCount,
    Refuse,
    RuleInForce,
    breaker_event,
    collection_window_refusal,
    decide_approval,
    decide_collection,
    decide_request,
    late_ballot,
    matching_freeze,
)
from broker.policy.iam_actions import iam_database
from broker.scopes.model import RateLimit
from broker.scopes.registry import ScopeSet, load_scope_set
from broker.store.records import FreezeRecord, RequestRecord
from tests.scopes.factory import lint_context

ROOT = Path(__file__).resolve().parents[2]
AGENT = AgentIdentity(issuer="local", subject="agent:payments-copilot")
NEW_YORK = dt.timezone(dt.timedelta(hours=-5))
TUESDAY = dt.datetime(2026, 11, 10, 12, 0, tzinfo=NEW_YORK).timestamp()
SATURDAY = dt.datetime(2026, 11, 14, 12, 0, tzinfo=NEW_YORK).timestamp()
YEAR_END = dt.datetime(2026, 12, 22, 12, 0, tzinfo=NEW_YORK).timestamp()
OBJECTS = "arn:aws:s3:::payments-prod-invoices/2026/11/*"
ALICE = Approver(name="alice", email="alice@example.com")
NO_COUNT = Counters()


@pytest.fixture(scope="module")
def scopes() -> ScopeSet:
    return load_scope_set(ROOT / "scopes", lint_context()).scope_set


def resolved(scopes: ScopeSet, tier: str = "read", **body: Any) -> ResolvedRequest:
    request = {
        "service": "payments",
        "environment": "prod",
        "region": "us-east-1",
        "tier": tier,
        "backend": "aws",
        "resources": [] if tier == "read" else [OBJECTS],
        **body,
    }
    return resolve(parse_request(request), scopes, AGENT, iam_database())


def freeze(kind: str, target: str) -> FreezeRecord:
    return FreezeRecord(kind, target, "incident 42", "operator", 1.0)  # type: ignore[arg-type]


def record(status: str = "pending", **changes: Any) -> RequestRecord:
    made = RequestRecord(
        id="req_" + "a" * 26,
        agent_key=AGENT.key,
        agent_subject=AGENT.subject,
        agent_issuer="local",
        agent_claims={},
        service="payments",
        environment="prod",
        region="us-east-1",
        tier="write",
        backend="aws",
        resources=(OBJECTS,),
        duration_seconds=1800,
        justification="fix the batch",
        status=status,  # type: ignore[arg-type]
        created_at=TUESDAY,
        expires_at=TUESDAY + 1800,
        approvals_required=1,
    )
    return replace(made, **changes)


def rule(scopes: ScopeSet, tier: str = "write", **changes: Any) -> RuleInForce:
    payments = scopes.scopes["payments"]
    approval = payments.tiers[tier].approval  # type: ignore[index]
    assert approval is not None
    return RuleInForce(payments, replace(approval, **changes), frozenset({"alice"}))


# -- an agent's request ---------------------------------------------------------------


def test_a_read_is_allowed_and_a_write_needs_its_tiers_approval(scopes: ScopeSet) -> None:
    assert decide_request(resolved(scopes), AGENT, [], NO_COUNT, TUESDAY) == Allow()
    write = resolved(scopes, "write")
    decision = decide_request(write, AGENT, [], NO_COUNT, TUESDAY)
    assert decision == NeedsApproval(write.tier.approval)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "target", "stops"),
    [
        ("all", "*", True),
        ("agent", "agent:payments-copilot", True),
        ("agent", "agent:other", False),
        ("scope", "payments", True),
        ("scope", "payments/prod", True),
        ("scope", "payments/staging", False),
        ("scope", "ledger", False),
    ],
)
def test_a_freeze_stops_what_it_names(
    scopes: ScopeSet, kind: str, target: str, stops: bool
) -> None:
    decision = decide_request(resolved(scopes), AGENT, [freeze(kind, target)], NO_COUNT, TUESDAY)
    if not stops:
        assert decision == Allow()
        return
    assert isinstance(decision, Deny) and decision.code == "frozen"
    assert "incident 42" in decision.reason and "`broker unfreeze`" in decision.reason
    assert isinstance(decision.error(), Frozen)


def test_a_frozen_agent_is_refused_before_its_counts_matter(scopes: ScopeSet) -> None:
    spent = Counters(RateCount(RateLimit(1, 60), taken=False, count=1, oldest=TUESDAY))
    decision = decide_request(resolved(scopes), AGENT, [freeze("all", "*")], spent, TUESDAY)
    assert isinstance(decision, Deny) and decision.code == "frozen"


def test_a_change_freeze_stops_escalations_only(scopes: ScopeSet) -> None:
    assert decide_request(resolved(scopes), AGENT, [], NO_COUNT, YEAR_END) == Allow()
    decision = decide_request(resolved(scopes, "write"), AGENT, [], NO_COUNT, YEAR_END)
    assert isinstance(decision, Deny) and decision.code == "change_freeze"
    assert decision.window == "year-end close"
    error = decision.error()
    assert isinstance(error, ChangeFreeze) and error.body() == {"window": "year-end close"}
    weekend = decide_request(resolved(scopes, "delete"), AGENT, [], NO_COUNT, SATURDAY)
    assert isinstance(weekend, Deny) and weekend.window == "weekend deletes"


def test_a_spent_rate_limit_says_when_to_retry(scopes: ScopeSet) -> None:
    limit = RateLimit(count=10, per_seconds=3600)
    spent = Counters(RateCount(limit, taken=False, count=10, oldest=TUESDAY - 600))
    decision = decide_request(resolved(scopes, "write"), AGENT, [], spent, TUESDAY)
    assert isinstance(decision, Deny) and decision.code == "rate_limited"
    assert decision.retry_after == 3001
    assert "reached (10 in the window)" in decision.reason
    error = decision.error()
    assert isinstance(error, RateLimited) and error.retry_after == 3001
    taken = Counters(RateCount(limit, taken=True, count=3, oldest=TUESDAY))
    allowed = decide_request(resolved(scopes, "write"), AGENT, [], taken, TUESDAY)
    assert isinstance(allowed, NeedsApproval)


def test_an_escalated_tier_without_a_rule_is_refused_not_granted(scopes: ScopeSet) -> None:
    write = resolved(scopes, "write")
    bare = replace(write, tier=replace(write.tier, approval=None))
    decision = decide_request(bare, AGENT, [], NO_COUNT, TUESDAY)
    assert isinstance(decision, Deny) and decision.code == "forbidden"


def test_refusals_count_for_the_breaker_by_kind() -> None:
    from broker.errors import BadRequest, BlastRadiusExceeded, NotFound

    assert breaker_event(Frozen("x")) is None
    assert breaker_event(RateLimited("x", 1)) is None
    assert breaker_event(Forbidden("x")) == "out_of_scope"
    assert breaker_event(BlastRadiusExceeded("x")) == "out_of_scope"
    assert breaker_event(ChangeFreeze("x", "w")) == "denial"
    assert breaker_event(BadRequest("x", "resources")) == "out_of_scope"
    assert breaker_event(NotFound("x", "service")) == "out_of_scope"
    assert breaker_event(NotFound("x", "environment")) == "denial"
    assert breaker_event(BadRequest("x")) == "denial"


def test_the_first_matching_freeze_is_the_one_named() -> None:
    freezes = [freeze("agent", "agent:other"), freeze("scope", "payments"), freeze("all", "*")]
    assert matching_freeze(freezes, AGENT.subject, "payments", "prod") == freezes[1]
    assert matching_freeze(freezes[:2], AGENT.subject, None, None) is None


# -- an approver's ballot ---------------------------------------------------------------


def test_an_eligible_approver_is_accepted(scopes: ScopeSet) -> None:
    assert decide_approval(record(), ALICE, "approve", "link", rule(scopes), TUESDAY) == Accept()
    assert decide_approval(record(), ALICE, "approve", "slack", rule(scopes), TUESDAY) == Accept()


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("decided", "conflict", "this request is already denied"),
        ("rule gone", "forbidden", "no longer exists"),
        ("requester", "forbidden", "the requester cannot approve its own request"),
        ("not listed", "forbidden", "bob is not an approver for tier write of payments"),
        ("break-glass", "forbidden", "`broker break-glass approve`"),
        ("slack", "forbidden", "cannot be approved inside Slack; use the approval page"),
        ("change freeze", "change_freeze", "approvals are refused during change freeze"),
    ],
)
def test_each_rule_refuses_with_its_own_sentence(
    scopes: ScopeSet, case: str, code: str, words: str
) -> None:
    approver, target, via, now = ALICE, record(), "link", TUESDAY
    in_force: RuleInForce | None = rule(scopes)
    if case == "decided":
        target = record("denied")
    elif case == "rule gone":
        in_force = None
    elif case == "requester":
        approver = Approver(name="payments-copilot")
        in_force = replace(rule(scopes), eligible=frozenset({"payments-copilot"}))
    elif case == "not listed":
        approver = Approver(name="bob")
    elif case == "break-glass":
        target = record(break_glass=True)
    elif case == "slack":
        via, in_force = "slack", rule(scopes, allow_slack_approval=False)
    else:
        now = YEAR_END
    verdict = decide_approval(target, approver, "approve", via, in_force, now)
    assert isinstance(verdict, Refuse) and verdict.code == code, verdict
    assert words in verdict.reason


def test_a_deny_is_not_held_back_by_slack_break_glass_or_a_change_freeze(scopes: ScopeSet) -> None:
    strict = rule(scopes, allow_slack_approval=False)
    for target, via, now in [
        (record(), "slack", TUESDAY),
        (record(break_glass=True), "link", TUESDAY),
        (record(), "link", YEAR_END),
    ]:
        assert decide_approval(target, ALICE, "deny", via, strict, now) == Accept()


def test_break_glass_approvals_skip_the_change_freeze(scopes: ScopeSet) -> None:
    glass = record(break_glass=True)
    verdict = decide_approval(glass, ALICE, "approve", "break-glass", rule(scopes), YEAR_END)
    assert verdict == Accept()


def test_a_late_ballot_is_refused_inside_the_transaction() -> None:
    assert late_ballot(record(), "approve") is None
    assert late_ballot(record("approved"), "deny") is None  # a deny may still stop it
    late = late_ballot(record("approved"), "approve")
    assert late is not None and isinstance(late.error(), Conflict)
    for status in {"collected", "expired", "cancelled", "denied"} - set(OPEN_STATES):
        assert late_ballot(record(status), "deny") is not None


# -- collection -----------------------------------------------------------------------


def test_collection_waits_for_approvals_and_the_delay() -> None:
    pending = decide_collection(record(), 0, None, TUESDAY)
    assert isinstance(pending, Deny) and pending.reason == "waiting for approvals (0 of 1)"
    assert isinstance(pending.error(), RequestNotReady)
    approved = record("approved", approved_at=TUESDAY, delay_seconds=600)
    waiting = decide_collection(approved, 1, None, TUESDAY + 100)
    assert isinstance(waiting, Deny) and waiting.reason.endswith("ends in 500 s")
    assert decide_collection(approved, 1, None, TUESDAY + 600) == Allow()


@pytest.mark.parametrize(
    ("status", "code"),
    [("denied", "forbidden"), ("collected", "gone"), ("expired", "gone"), ("cancelled", "gone")],
)
def test_a_closed_request_cannot_be_collected(status: str, code: str) -> None:
    verdict = decide_collection(record(status), 0, None, TUESDAY)
    assert isinstance(verdict, Deny) and verdict.code == code


def test_a_freeze_stops_collection_of_an_approved_request() -> None:
    approved = record("approved", approved_at=TUESDAY)
    verdict = decide_collection(approved, 1, freeze("all", "*"), TUESDAY)
    assert isinstance(verdict, Deny) and isinstance(verdict.error(), Frozen)


def test_a_change_freeze_begun_after_approval_stops_collection_but_not_break_glass(
    scopes: ScopeSet,
) -> None:
    write = resolved(scopes, "write")
    assert collection_window_refusal(write, record("approved"), TUESDAY) is None
    refused = collection_window_refusal(write, record("approved"), YEAR_END)
    assert refused is not None and refused.window == "year-end close"
    glass = record("approved", break_glass=True)
    assert collection_window_refusal(write, glass, YEAR_END) is None


@pytest.mark.parametrize(
    ("subject", "claims"),
    [
        ("Alice@Example.COM", {}),  # an issuer whose subject claim is the email
        ("00u-alice", {"email": "ALICE@example.com"}),  # an identity claim naming her
    ],
)
def test_an_approver_is_the_requester_whatever_the_case_of_her_email(
    scopes: ScopeSet, subject: str, claims: dict[str, str]
) -> None:
    """Emails name one mailbox whatever their case (the sign-in compares them so): an
    agent acting as alice@example.com cannot have alice approve it."""
    alice = Approver(name="alice", email="alice@example.com")
    mine = record(agent_subject=subject, agent_issuer="corp", agent_claims=claims)
    verdict = decide_approval(mine, alice, "approve", "link", rule(scopes), TUESDAY)
    assert isinstance(verdict, Refuse) and "cannot approve its own request" in verdict.reason
