"""The approval rules, enforced by the server at the moment of each decision."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from broker.app import create_app
from broker.config import Approver
from broker.errors import ChangeFreeze, Conflict, Forbidden
from broker.notify.base import ApprovalNotice
from broker.services import build_services
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    audit_trail,
    collect,
    open_request,
    status,
)
from tests.fixtures.broker import APPROVERS, GROUPS, Broker, FakeIssuer, make_broker
from tests.fixtures.broker import test_settings as broker_settings


def scope_file(broker: Broker, name: str) -> Path:
    return broker.services.settings.scopes_dir / f"{name}.yaml"


def edit_scope(broker: Broker, name: str, old: str, new: str) -> None:
    path = scope_file(broker, name)
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    outcome = broker.services.scopes.reload()
    assert outcome.applied, outcome.problems


def test_a_write_is_approved_by_one_lead_and_collected_once(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    assert collect(broker, request_id).status_code == 409  # not approved yet
    view = broker.services.approvals.decide(request_id, "alice", "approve", "link")
    assert view.record.status == "approved" and view.approvers == ("alice",)
    first = collect(broker, request_id)
    assert first.status_code == 200, first.json
    [call] = broker.issuers["aws"].calls
    assert call.tier == "write" and call.resources == tuple(WRITE_PAYMENTS["resources"])
    second = collect(broker, request_id)
    assert second.status_code == 410 and second.json["error"] == "gone"
    assert len(broker.issuers["aws"].calls) == 1
    assert audit_trail(broker, request_id) == [
        ("request", "pending"),
        ("notify", "sent"),
        ("approve", "recorded"),
        ("request", "approved"),
        # The claim commits with its audit record and the credential's write-ahead; the
        # credential's record follows once it is minted.
        ("collect", "collected"),
        ("issue", "issued"),
    ]


def test_the_grant_is_exactly_what_was_asked(broker: Broker) -> None:
    body = {**WRITE_PAYMENTS, "region": "eu-west-1", "duration": 900}
    request_id = open_request(broker, body)
    broker.services.approvals.decide(request_id, "bob", "approve", "link")
    assert collect(broker, request_id).status_code == 200
    [call] = broker.issuers["aws"].calls
    assert (call.region, call.duration_seconds) == ("eu-west-1", 900)
    assert call.session_policy is not None
    for statement in call.session_policy["Statement"]:
        assert statement["Resource"] == WRITE_PAYMENTS["resources"]


def test_only_the_requesting_agent_collects(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    broker.services.approvals.decide(request_id, "alice", "approve", "link")
    other = collect(broker, request_id, agent="ledger-maintainer")
    assert other.status_code == 404  # as for an unknown id: tests/api/test_request_ids.py
    assert broker.issuers["aws"].calls == []
    assert collect(broker, request_id).status_code == 200


@pytest.mark.parametrize(
    "impostor",
    [
        Approver(name="payments-copilot", display_name="same name as the agent"),
        Approver(name="mallory", oidc_subject="agent:payments-copilot"),
    ],
)
def test_the_requester_can_never_approve_its_own_request(
    tmp_path: Path, impostor: Approver
) -> None:
    made = make_broker(
        tmp_path,
        approvers={**APPROVERS, impostor.name: impostor},
        groups={**GROUPS, "payments-leads": ("alice", "bob", impostor.name)},
    )
    request_id = open_request(made, WRITE_PAYMENTS)
    with pytest.raises(Forbidden, match="cannot approve its own request"):
        made.services.approvals.decide(request_id, impostor.name, "approve", "link")
    assert status(made, request_id)["approvals_received"] == 0
    assert ("approve", "refused") in audit_trail(made, request_id)
    made.services.close()


def test_only_approvers_listed_for_the_tier_may_decide(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    with pytest.raises(Forbidden, match="carol is not an approver for tier write of payments"):
        broker.services.approvals.decide(request_id, "carol", "approve", "link")
    with pytest.raises(Forbidden, match="not a configured approver"):
        broker.services.approvals.decide(request_id, "agent:payments-copilot", "approve", "link")
    refusals = [
        r.actor
        for r in broker.services.store.audit_records(request_id=request_id)
        if r.outcome == "refused"
    ]
    assert refusals == ["approver:carol", "approver:agent:payments-copilot"]
    assert status(broker, request_id)["status"] == "pending"


def test_an_approver_removed_from_the_scope_before_approving_is_refused(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    edit_scope(broker, "payments", "groups: [payments-leads]", "approvers: [alice]")
    with pytest.raises(Forbidden, match="bob is not an approver"):
        broker.services.approvals.decide(request_id, "bob", "approve", "link")
    assert broker.services.approvals.decide(
        request_id, "alice", "approve", "link"
    ).record.status == ("approved")


def test_an_approver_removed_from_the_config_is_refused(tmp_path: Path) -> None:
    first = make_broker(tmp_path)
    request_id = open_request(first, WRITE_PAYMENTS)
    first.services.close()
    # The broker restarts with bob gone from the config; the store and keys remain.
    without_bob = {k: v for k, v in APPROVERS.items() if k != "bob"}
    later = make_broker(
        tmp_path, approvers=without_bob, groups={**GROUPS, "payments-leads": ("alice",)}
    )
    with pytest.raises(Forbidden, match="'bob' is not a configured approver"):
        later.services.approvals.decide(request_id, "bob", "approve", "link")
    later.services.close()


def test_delete_needs_two_distinct_approvers_and_then_the_delay(broker: Broker) -> None:
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    approvals = broker.services.approvals
    assert approvals.decide(request_id, "carol", "approve", "link").record.status == "pending"
    with pytest.raises(Conflict, match=r"^already approved, not counted again \(carol approved"):
        approvals.decide(request_id, "carol", "approve", "link")  # a double click
    with pytest.raises(Conflict, match="^already approved, not counted again"):
        approvals.decide(request_id, "carol", "deny", "link")  # the first ballot stands
    again = approvals.view(approvals.get(request_id))
    assert again.approvals_received == 1 and again.record.status == "pending"
    done = approvals.decide(request_id, "dave", "approve", "link")
    assert done.record.status == "approved" and done.approvals_received == 2
    early = collect(broker, request_id, agent=LEDGER_AGENT)
    assert early.status_code == 409 and early.json["error"] == "not_ready"
    assert "delay ends in 900 s" in early.json["message"]
    broker.clock.advance(15 * 60 - 1)
    assert collect(broker, request_id, agent=LEDGER_AGENT).status_code == 409
    broker.clock.advance(1)
    collected = collect(broker, request_id, agent=LEDGER_AGENT)
    assert collected.status_code == 200, collected.json
    assert [c.tier for c in broker.issuers["vault"].calls] == ["delete"]


def test_a_single_deny_ends_the_request(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    denied = broker.services.approvals.decide(request_id, "bob", "deny", "link", "not today")
    assert denied.record.status == "denied" and denied.denied_by == "bob"
    assert denied.record.reason == "denied by bob: not today"
    with pytest.raises(Conflict, match="already denied"):
        broker.services.approvals.decide(request_id, "alice", "approve", "link")
    refused = collect(broker, request_id)
    assert refused.status_code == 403 and "denied by bob" in refused.json["message"]
    assert broker.issuers["aws"].calls == []


def test_a_deny_during_the_delay_ends_an_approved_request(broker: Broker) -> None:
    edit_scope(broker, "ledger-secrets", "groups: [dba]", "groups: [sre-oncall]")
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    approvals = broker.services.approvals
    approvals.decide(request_id, "carol", "approve", "link")
    approvals.decide(request_id, "dave", "approve", "link")
    assert approvals.decide(request_id, "erin", "deny", "link").record.status == "denied"
    broker.clock.advance(15 * 60)
    assert collect(broker, request_id, agent=LEDGER_AGENT).status_code == 403


def test_no_more_approvals_are_recorded_than_required(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    broker.services.approvals.decide(request_id, "alice", "approve", "link")
    with pytest.raises(Conflict, match="already approved"):
        broker.services.approvals.decide(request_id, "bob", "approve", "link")
    recorded = broker.services.store.approvals_for(request_id)
    assert [(a.approver, a.decision) for a in recorded] == [("alice", "approve")]


def test_approvals_are_refused_during_a_change_freeze(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    now = dt.datetime.fromtimestamp(broker.clock(), dt.UTC)
    start = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    edit_scope(
        broker,
        "payments",
        "freezes: []\n",
        f"freezes:\n  - name: incident review\n    start: {start}\n    end: {end}\n"
        "    timezone: UTC\n    tiers: [write]\n",
    )
    with pytest.raises(ChangeFreeze, match="incident review"):
        broker.services.approvals.decide(request_id, "alice", "approve", "link")
    # A deny is always possible: it only takes power away.
    assert broker.services.approvals.decide(request_id, "alice", "deny", "link").record.status == (
        "denied"
    )


def test_an_unanswered_request_expires(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    broker.clock.advance(30 * 60)
    assert broker.services.approvals.sweep() == 1
    with pytest.raises(Conflict, match="already expired"):
        broker.services.approvals.decide(request_id, "alice", "approve", "link")
    assert ("request", "expired") in audit_trail(broker, request_id)


def test_an_approved_request_expires_when_not_collected_in_time(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    broker.services.approvals.decide(request_id, "alice", "approve", "link")
    broker.clock.advance(broker.services.settings.approvals.collect_window_seconds)
    response = collect(broker, request_id)
    assert response.status_code == 410 and "expired" in response.json["message"]


class CrashingNotifier:
    """A notifier with a bug: every call raises something that is not NotificationFailed."""

    def request_opened(self, notice: ApprovalNotice) -> Mapping[str, Any]:
        raise RuntimeError("bug in the notifier, url=https://hooks.example/secret-path")

    def request_updated(
        self, notice: ApprovalNotice, status: str, detail: str, handle: Mapping[str, Any]
    ) -> None:
        raise RuntimeError("bug in the notifier")

    def alert(self, text: str, evidence: Sequence[str] = ()) -> None:
        raise RuntimeError("bug in the notifier")


def test_a_crashing_notifier_loses_neither_the_request_nor_the_credentials(
    tmp_path: Path,
) -> None:
    made = make_broker(tmp_path)
    settings = broker_settings(tmp_path)
    issuers = {"aws": FakeIssuer("aws", made.clock)}
    services = build_services(
        settings,
        clock=made.clock,
        issuers=issuers,
        notifier=CrashingNotifier(),
        keys=made.services.keys,
    )
    crashing = Broker(create_app(services=services), services, made.clock, issuers)
    request_id = open_request(crashing, WRITE_PAYMENTS)
    services.approvals.decide(request_id, "alice", "approve", "link")
    response = collect(crashing, request_id)
    assert response.status_code == 200 and "credentials" in response.json
    failures = [
        r.reason
        for r in services.store.audit_records(request_id=request_id)
        if r.action == "notify"
    ]
    assert failures and set(failures) == {"RuntimeError"}  # never the exception's text
    services.close()
    made.services.close()
