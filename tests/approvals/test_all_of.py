"""Approval rules over several groups at once: "1 of payments-leads AND 1 of sre-oncall".

Each set of the rule needs its own approvals, from distinct people: a person in both groups
counts for one set only. Enforced in the pure decision and the store's locked transaction;
lint refuses a rule no assignment of people can meet; every approver told of the request
learns who decided it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.errors import Conflict
from broker.policy import quorum
from broker.policy.quorum import PeopleSet
from broker.scopes import lint as rules
from broker.scopes.lint import LintContext
from tests.approvals.flows import WRITE_PAYMENTS, collect, open_request, status
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.slack import FakeSlack, make_slack_broker
from tests.scopes.factory import lint_context, load_ok, scope_data, write_scope
from tests.scopes.test_lint import findings

AND_RULE = """    approval:
      all_of:
        - {groups: [payments-leads], required: 1}
        - {groups: [sre-oncall], required: 1}
"""


def _with_write_rule(broker: Broker, rule: str) -> None:
    """payments' write tier approved under ``rule`` instead of one of payments-leads."""
    path = broker.services.settings.scopes_dir / "payments.yaml"
    text = path.read_text()
    old = "    approval:\n      groups: [payments-leads]\n      required: 1\n"
    assert old in text
    path.write_text(text.replace(old, rule, 1))
    outcome = broker.services.scopes.reload()
    assert outcome.applied, outcome.problems


@pytest.fixture()
def and_broker(tmp_path: Path) -> Broker:
    made = make_broker(tmp_path)
    _with_write_rule(made, AND_RULE)
    return made


def test_one_groups_approvals_are_not_enough(and_broker: Broker) -> None:
    request_id = open_request(and_broker, WRITE_PAYMENTS)
    approvals = and_broker.services.approvals
    assert approvals.decide(request_id, "alice", "approve", "link").record.status == "pending"
    # bob is of payments-leads too: two approvals, but sre-oncall has not said yes.
    second = approvals.decide(request_id, "bob", "approve", "link")
    assert second.record.status == "pending" and second.approvals_received == 2
    assert collect(and_broker, request_id).status_code == 409
    done = approvals.decide(request_id, "erin", "approve", "link")
    assert done.record.status == "approved"
    assert collect(and_broker, request_id).status_code == 200


def test_a_person_in_both_groups_counts_once(tmp_path: Path) -> None:
    made = make_broker(tmp_path)
    _with_write_rule(
        made,
        "    approval:\n      all_of:\n"
        "        - {groups: [release-managers], required: 1}\n"
        "        - {groups: [sre-oncall], required: 1}\n",
    )
    request_id = open_request(made, WRITE_PAYMENTS)
    approvals = made.services.approvals
    # carol is a release manager and on call: her one approval meets one set only.
    assert approvals.decide(request_id, "carol", "approve", "link").record.status == "pending"
    with pytest.raises(Conflict, match="already approved, not counted again"):
        approvals.decide(request_id, "carol", "approve", "link")
    assert status(made, request_id)["approvals_received"] == 1
    # dave is both too: with carol's, both sets are met by two people.
    assert approvals.decide(request_id, "dave", "approve", "link").record.status == "approved"
    made.services.close()


def test_the_request_records_every_approval_the_rule_needs(and_broker: Broker) -> None:
    response = and_broker.post("/v1/credentials", WRITE_PAYMENTS)
    assert response.status_code == 202 and response.get_json()["approvals_required"] == 2


def test_assignment_of_distinct_people() -> None:
    leads = PeopleSet("leads", frozenset({"alice", "carol"}), 1)
    oncall = PeopleSet("oncall", frozenset({"carol"}), 1)
    assert not quorum.met([leads, oncall], ["carol"])
    assert len(quorum.missing([leads, oncall], ["carol"])) == 1  # one more, of either set
    # carol must go to oncall for alice to fill leads: the assignment finds it.
    assert quorum.met([leads, oncall], ["carol", "alice"])
    two = PeopleSet("sre", frozenset({"carol", "dave", "erin"}), 2)
    assert not quorum.met([two, oncall], ["carol", "dave"])
    assert quorum.met([two, oncall], ["carol", "dave", "erin"])


# -- the scope file -------------------------------------------------------------------


class Directory:
    GROUPS = {"leads": {"alice"}, "oncall": {"alice"}, "sre": {"carol", "dave"}}

    def has_approver(self, name: str) -> bool:
        return name in ("alice", "carol", "dave")

    def has_group(self, name: str) -> bool:
        return name in self.GROUPS

    def has_issuer(self, name: str) -> bool:
        return name == "local"

    def approvers_for(self, names: tuple[str, ...], groups: tuple[str, ...]) -> set[str]:
        found = {n for n in names if self.has_approver(n)}
        for group in groups:
            found |= self.GROUPS.get(group, set())
        return found


def _and(*sets: dict[str, object], tier: str = "write") -> dict[str, object]:
    data = scope_data()
    approval = data["tiers"][tier]["approval"]
    for key in ("approvers", "groups", "required"):
        approval.pop(key, None)
    approval["all_of"] = list(sets)
    return data


def test_the_syntax_loads(tmp_path: Path) -> None:
    loaded = load_ok(write_scope(tmp_path, _and({"groups": ["leads"]}, {"groups": ["sre"]})))
    approval = loaded.scope.tiers["write"].approval
    assert approval is not None and approval.total_required == 2
    assert approval.describe_sets() == "1 of leads and 1 of sre"


def test_sets_go_in_all_of_not_beside_it(tmp_path: Path) -> None:
    data = _and({"groups": ["leads"]})
    data["tiers"]["write"]["approval"]["required"] = 2
    from tests.scopes.test_loader import reasons

    found = reasons(write_scope(tmp_path, data))
    assert any("'required' goes inside each entry of all_of" in p for p in found), found


def test_a_rule_nobody_can_meet_is_unsatisfiable(tmp_path: Path) -> None:
    """alice is the only lead and the only on-call person: she cannot be both."""
    ctx = LintContext(iam=lint_context().iam, directory=Directory())
    data = _and({"groups": ["leads"]}, {"groups": ["oncall"]})
    (problem,) = findings(tmp_path, data, rules.approvals_satisfiable, ctx)
    assert "[unsatisfiable-approval]" in problem
    assert "requires 1 of leads and 1 of oncall, each approval by a different person" in problem
    assert "short: 1 more of oncall" in problem or "short: 1 more of leads" in problem
    met = _and({"groups": ["leads"]}, {"groups": ["sre"], "required": 2})
    assert findings(tmp_path, met, rules.approvals_satisfiable, ctx) == []
    unknown = _and({"groups": ["leads"]}, {"groups": ["nobody"]})
    found = findings(tmp_path, unknown, rules.approvals_satisfiable, ctx)
    assert any("group 'nobody' is not defined" in p for p in found)


def test_delete_counts_every_set(tmp_path: Path) -> None:
    one = _and({"groups": ["sre"]}, tier="delete")
    (problem,) = findings(tmp_path, one, rules.delete_approvals)
    assert "tier delete requires 1 approval" in problem
    two = _and({"groups": ["sre"]}, {"groups": ["leads"]}, tier="delete")
    assert findings(tmp_path, two, rules.delete_approvals) == []


# -- who decided reaches everyone told --------------------------------------------------


def test_every_approver_told_learns_who_decided(tmp_path: Path, fake_slack: FakeSlack) -> None:
    made = make_slack_broker(tmp_path, fake_slack, direct=("alice", "bob"))
    try:
        request_id = open_request(made, WRITE_PAYMENTS)
        posted = fake_slack.api("chat.postMessage")
        channels = {c.body["channel"] for c in posted}
        assert channels == {"#payments-approvals", "UALICE", "UBOB"}
        made.services.approvals.decide(request_id, "bob", "approve", "link")
        updates = fake_slack.api("chat.update")
        assert len(updates) == 3  # the channel's message and both direct messages
        for update in updates:
            assert "approved by bob" in json.dumps(update.body["blocks"])
            assert "broker_approve" not in json.dumps(update.body["blocks"])  # no buttons
        news = fake_slack.api("chat.postMessage")[len(posted) :]
        assert sorted(c.body["channel"][0] for c in news) == ["D", "D"]  # a new DM each
        for message in news:
            assert "approved by bob" in json.dumps(message.body["blocks"])
            assert request_id in message.body["text"]
    finally:
        made.services.close()


def test_an_expired_request_is_said_so_to_everyone_told(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    made = make_slack_broker(tmp_path, fake_slack, direct=("alice",))
    try:
        request_id = open_request(made, WRITE_PAYMENTS)
        made.clock.advance(3600)
        assert made.services.approvals.sweep() == 1
        updates = fake_slack.api("chat.update")
        assert len(updates) == 2
        assert all("expired before anyone decided" in json.dumps(u.body) for u in updates)
        news = [c for c in fake_slack.api("chat.postMessage") if c.body["channel"].startswith("D")]
        assert len(news) == 1 and f"Request {request_id}" in news[0].body["text"]
        assert "expired" in news[0].body["text"]
    finally:
        made.services.close()


def test_the_page_says_what_is_still_needed(and_broker: Broker) -> None:
    from tests.approvals.flows import link_token

    request_id = open_request(and_broker, WRITE_PAYMENTS)
    and_broker.services.approvals.decide(request_id, "alice", "approve", "link")
    and_broker.services.approvals.decide(request_id, "bob", "approve", "link")
    page = and_broker.client.get(f"/approve/{link_token(and_broker, request_id, 'erin')}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "This tier needs 1 of payments-leads and 1 of sre-oncall" in text
    assert "still needed: 1 more of sre-oncall" in text
    assert "<strong>1</strong> still needed" in text
