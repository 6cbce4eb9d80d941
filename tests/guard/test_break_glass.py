"""Break-glass: two distinct approvers from two distinct OS users open emergency access for
a named agent; it passes a change freeze, alerts loudly, is flagged for review in the audit
trail, and its short-lived credentials are collectable at once by that agent only.

The logic is driven directly (the OS user is a parameter there); the CLI tests below run
`broker break-glass` in-process as the real OS user.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from broker.errors import BadRequest, BlastRadiusExceeded, Forbidden, Frozen, NotFound
from broker.guard.break_glass import (
    BreakGlass,
    BreakGlassAsk,
    Operator,
    PriorApproval,
    approval_problem,
    reason_problem,
)
from broker.store.records import FreezeRecord
from tests.fixtures.broker import Broker
from tests.guard.helpers import (
    AGENT,
    OTHER_AGENT,
    WRITE,
    RecordingNotifier,
    epoch,
    guard_broker,
    operator,
)

NY = "America/New_York"
FREEZES = """\
- name: weekend deletes
  recurring: {days: [sat, sun], start: "00:00", end: "24:00"}
  timezone: America/New_York
  tiers: [delete]
- name: release freeze
  start: 2027-01-09T00:00
  end: 2027-01-10T00:00
  timezone: America/New_York
  tiers: [write]
"""
SATURDAY = epoch("2027-01-09T12:00", NY)
REASON = "Checkout is down: a corrupt export blocks every order; restore it now."
ASK = BreakGlassAsk(
    agent=f"agent:{AGENT}",
    service="shop",
    environment="prod",
    region="us-east-1",
    tier="delete",
    backend="aws",
    resources=("arn:aws:s3:::shop-prod-data/exports/broken.csv",),
    reason=REASON,
)
CAROL = operator("carol")
DAVE = operator("dave", host="laptop-7")


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Broker, RecordingNotifier]:
    return guard_broker(tmp_path, FREEZES, at=SATURDAY)


@pytest.fixture()
def glass(made: tuple[Broker, RecordingNotifier]) -> BreakGlass:
    return BreakGlass.from_services(made[0].services)


def collect(broker: Broker, request_id: str, agent: str = AGENT) -> Any:
    return broker.client.post(
        f"/v1/requests/{request_id}/credentials", headers=broker.headers(agent)
    )


def opened(glass: BreakGlass, ask: BreakGlassAsk = ASK) -> str:
    outcome = glass.request(ask, "carol", CAROL)
    assert outcome.view.record.status == "pending" and outcome.view.approvals_received == 1
    return outcome.view.record.id


# -- the whole procedure -----------------------------------------------------------------


def test_two_humans_open_access_during_a_freeze_and_the_agent_collects_at_once(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, notifier = made
    normal = broker.post("/v1/credentials", {**WRITE, **{"tier": "delete"}}, agent=AGENT)
    assert (normal.status_code, normal.json["window"]) == (403, "weekend deletes")
    request_id = opened(glass)
    assert collect(broker, request_id).status_code == 409  # one approval is not enough
    outcome = glass.approve(request_id, "dave", "Confirmed with the on-call lead, go ahead.", DAVE)
    record = outcome.view.record
    assert record.status == "approved" and outcome.view.approvers == ("carol", "dave")
    assert record.break_glass and record.delay_seconds == 0  # no mandatory delay
    response = collect(broker, request_id)  # the tier's 10-minute delay does not apply
    assert response.status_code == 200, response.json
    [call] = broker.issuers["aws"].calls
    assert call.tier == "delete" and call.resources == ASK.resources
    assert call.duration_seconds == 900  # the lesser of the tier's 15 min and 15 min
    assert notifier.opened == []  # Slack's approval message is bypassed
    assert collect(broker, request_id).status_code == 410  # once


def test_a_longer_tier_gets_the_short_break_glass_ttl(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, _ = made
    ask = BreakGlassAsk(**{**ASK.__dict__, "tier": "write"})  # write's TTL is 30 min
    request_id = glass.request(ask, "alice", CAROL).view.record.id
    glass.approve(request_id, "bob", "Second pair of eyes: agreed, this cannot wait.", DAVE)
    assert collect(broker, request_id).status_code == 200
    assert broker.issuers["aws"].calls[0].duration_seconds == 900


def test_the_ttl_setting_applies_where_the_backend_allows_it(tmp_path: Path) -> None:
    from dataclasses import replace

    from broker.config import ApprovalSettings

    broker, _ = guard_broker(
        tmp_path,
        FREEZES,
        at=SATURDAY,
        approvals=replace(ApprovalSettings(), break_glass_ttl_seconds=300),
    )
    glass = BreakGlass.from_services(broker.services)
    ask = BreakGlassAsk(**{**ASK.__dict__, "backend": "vault", "region": None})
    ask = BreakGlassAsk(**{**ask.__dict__, "resources": ("shop/prod/payment-key",)})
    request_id = opened(glass, ask)
    glass.approve(request_id, "dave", "Second pair of eyes: agreed, this cannot wait.", DAVE)
    assert collect(broker, request_id).status_code == 200
    assert broker.issuers["vault"].calls[0].duration_seconds == 300


# -- two distinct humans -----------------------------------------------------------------


def test_the_same_approver_twice_is_refused(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, _ = made
    request_id = opened(glass)
    with pytest.raises(Forbidden, match="carol already approved"):
        glass.approve(request_id, "carol", REASON, operator("someone-else"))
    assert broker.services.approvals.get(request_id).status == "pending"
    assert collect(broker, request_id).status_code == 409


def test_the_same_os_user_twice_is_refused(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, notifier = made
    request_id = opened(glass)
    with pytest.raises(Forbidden, match="operating-system user carol already approved"):
        glass.approve(request_id, "dave", REASON, operator("carol", host="another-host"))
    # $USER can be set by anyone: the account of the real uid is compared as well.
    spoofed = Operator(login="dave", account="carol", host="bastion-1")
    with pytest.raises(Forbidden, match="operating-system user carol"):
        glass.approve(request_id, "dave", REASON, spoofed)
    assert [a.approver for a in broker.services.store.approvals_for(request_id)] == ["carol"]
    refusals = [
        r
        for r in broker.services.store.audit_records(request_id=request_id)
        if (r.action, r.outcome) == ("break_glass", "refused")
    ]
    assert len(refusals) == 2 and all(r.details["review_required"] for r in refusals)
    assert [r.details["os_account"] for r in refusals] == ["carol", "carol"]
    assert sum("BREAK-GLASS refused" in text for text, _ in notifier.alerts) == 2
    # A different person on a different account is accepted.
    assert glass.approve(request_id, "dave", REASON, DAVE).view.record.status == "approved"


def test_an_os_users_claim_on_a_request_is_atomic_in_the_store(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    """The backstop for two approvals from one account at the same instant on two replicas."""
    request_id = opened(glass)
    with pytest.raises(Forbidden, match="operating-system user carol"):
        glass._claim(request_id, CAROL, made[0].clock())


@pytest.mark.parametrize(
    ("approver", "message"),
    [
        ("alice", "alice is not an approver for tier delete of shop"),  # a write approver
        ("zed", "'zed' is not a configured approver"),
    ],
)
def test_approvers_must_be_eligible_for_the_tier(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass, approver: str, message: str
) -> None:
    broker, _ = made
    with pytest.raises(Forbidden, match=message):
        glass.request(ASK, approver, CAROL)
    assert broker.services.store.list_requests() == []
    request_id = opened(glass)
    with pytest.raises(Forbidden, match=message):
        glass.approve(request_id, approver, REASON, DAVE)
    # The refused attempt did not use up dave's OS account: he approves under his own name.
    assert glass.approve(request_id, "dave", REASON, DAVE).view.record.status == "approved"


def test_a_break_glass_request_is_approved_on_the_cli_only(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    """A personal link or Slack proves no OS user: it cannot be the second approval."""
    broker, _ = made
    request_id = opened(glass)
    with pytest.raises(Forbidden, match="broker break-glass approve"):
        broker.services.approvals.decide(request_id, "dave", "approve", "link")
    # A deny still ends it, from anywhere.
    denied = broker.services.approvals.decide(request_id, "dave", "deny", "link", "not needed")
    assert denied.record.status == "denied"


def test_only_break_glass_requests_are_approved_here(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, _ = made
    broker.clock.now = epoch("2027-01-11T12:00", NY)  # Monday: no freeze
    normal = broker.post("/v1/credentials", WRITE, agent=AGENT).json["request_id"]
    with pytest.raises(Forbidden, match="not a break-glass request"):
        glass.approve(normal, "alice", REASON, DAVE)
    with pytest.raises(NotFound):
        glass.approve("req_" + "a" * 26, "dave", REASON, DAVE)
    with pytest.raises(BadRequest, match="malformed request id"):
        glass.approve("req_nope", "dave", REASON, DAVE)


# -- what break-glass does not bypass ----------------------------------------------------


@pytest.mark.parametrize(
    "reason", ["", "   ", "fix it", "urgent!!!!!!!!!!!!!!!!!!!!!", "a\x07" * 20]
)
def test_a_reason_of_at_least_a_sentence_is_mandatory(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass, reason: str
) -> None:
    broker, _ = made
    with pytest.raises(BadRequest) as refused:
        glass.request(BreakGlassAsk(**{**ASK.__dict__, "reason": reason}), "carol", CAROL)
    assert refused.value.field == "reason"
    assert broker.services.store.list_requests() == []
    request_id = opened(glass)
    with pytest.raises(BadRequest):
        glass.approve(request_id, "dave", reason, DAVE)


def test_the_kill_switch_still_wins(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, _ = made
    request_id = opened(glass)
    broker.services.store.add_freeze(
        FreezeRecord("agent", f"agent:{AGENT}", "incident 7", "operator:ops", broker.clock())
    )
    broker.services.guard.forget_freezes()
    with pytest.raises(Frozen, match="does not lift a freeze"):
        glass.request(ASK, "carol", CAROL)
    glass.approve(request_id, "dave", REASON, DAVE)
    response = collect(broker, request_id)
    assert (response.status_code, response.json["error"]) == (403, "frozen")
    assert broker.issuers["aws"].calls == []


def test_the_scope_still_decides(made: tuple[Broker, RecordingNotifier], glass: BreakGlass) -> None:
    broker, _ = made
    with pytest.raises(BlastRadiusExceeded):
        glass.request(
            BreakGlassAsk(**{**ASK.__dict__, "resources": ("arn:aws:s3:::*",)}), "carol", CAROL
        )
    with pytest.raises(Forbidden, match="may not request scope shop"):
        glass.request(BreakGlassAsk(**{**ASK.__dict__, "agent": "agent:stray-bot"}), "carol", CAROL)
    with pytest.raises(BadRequest, match="agent:NAME"):
        glass.request(BreakGlassAsk(**{**ASK.__dict__, "agent": "shop-bot"}), "carol", CAROL)
    with pytest.raises(BadRequest, match="read needs no approval"):
        glass.request(BreakGlassAsk(**{**ASK.__dict__, "tier": "read"}), "carol", CAROL)
    assert broker.services.store.list_requests() == []


def test_the_credentials_go_to_the_named_agent_only(
    made: tuple[Broker, RecordingNotifier], glass: BreakGlass
) -> None:
    broker, _ = made
    request_id = opened(glass)
    glass.approve(request_id, "dave", REASON, DAVE)
    stolen = collect(broker, request_id, agent=OTHER_AGENT)
    assert (stolen.status_code, stolen.json["error"]) == (404, "not_found")  # as if unknown
    assert broker.issuers["aws"].calls == []
    assert collect(broker, request_id).status_code == 200


# -- loud ----------------------------------------------------------------------------------


def test_it_is_loud_alert_warning_and_audit_flagged_for_review(
    made: tuple[Broker, RecordingNotifier],
    glass: BreakGlass,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker, notifier = made
    caplog.set_level(logging.WARNING, logger="broker.guard.break_glass")
    request_id = opened(glass)
    glass.approve(request_id, "dave", "Confirmed with the on-call lead, go ahead.", DAVE)
    assert collect(broker, request_id).status_code == 200
    [(first, evidence), (second, _)] = notifier.alerts
    assert first.startswith("BREAK-GLASS opened by carol (carol@bastion-1): delete on shop/prod")
    assert f"agent:{AGENT}" in first and request_id in first and "1 of 2" in first
    assert f"reason: {REASON}" in evidence
    assert second.startswith("BREAK-GLASS approved: delete on shop/prod for agent:shop-bot")
    assert "carol, dave" in second and "Review required" in second
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "break-glass requested",
        "break-glass issued",
    ]
    trail = list(broker.services.store.audit_records(request_id=request_id))
    assert [(r.action, r.outcome) for r in trail] == [
        ("request", "pending"),  # committed with the request itself
        ("approve", "recorded"),
        ("break_glass", "requested"),
        ("approve", "recorded"),
        ("request", "approved"),
        ("break_glass", "issued"),
        ("collect", "collected"),  # the claim, with the credential's write-ahead
        ("issue", "issued"),
    ]
    flagged = [r for r in trail if r.action == "break_glass"]
    assert all(r.details["review_required"] is True for r in flagged)
    assert [(r.details["os_user"], r.details["host"]) for r in flagged] == [
        ("carol", "bastion-1"),
        ("dave", "laptop-7"),
    ]
    assert [r.actor for r in flagged] == ["approver:carol", "approver:dave"]
    assert flagged[0].reason == REASON
    assert all(r.details["via"] == "break-glass" for r in trail if r.action == "approve")


def test_it_works_when_the_alert_cannot_be_sent(tmp_path: Path) -> None:
    broker, _ = guard_broker(
        tmp_path, FREEZES, at=SATURDAY, notifier=RecordingNotifier(fail_alerts=True)
    )
    glass = BreakGlass.from_services(broker.services)
    first = glass.request(ASK, "carol", CAROL)
    assert first.alert_failure == "slack alert failed: ratelimited"
    second = glass.approve(first.view.record.id, "dave", REASON, DAVE)
    assert second.alert_failure and second.view.record.status == "approved"
    assert collect(broker, first.view.record.id).status_code == 200
    failed = [
        r
        for r in broker.services.store.audit_records(request_id=first.view.record.id)
        if (r.action, r.outcome) == ("notify", "failed")
    ]
    assert len(failed) == 2


# -- the pure rules ------------------------------------------------------------------------


def test_approval_problem() -> None:
    prior = [PriorApproval("carol", frozenset({"carol"}))]
    assert approval_problem([], "carol", CAROL) is None
    assert approval_problem(prior, "dave", DAVE) is None
    assert "carol already approved" in (approval_problem(prior, "carol", DAVE) or "")
    assert "user carol" in (approval_problem(prior, "dave", operator("carol")) or "")


def test_reason_problem() -> None:
    assert reason_problem(REASON) is None
    assert reason_problem("x" * 2001) == "the reason must be at most 2000 characters"
    assert "at least a sentence" in (reason_problem("restore the export") or "")
