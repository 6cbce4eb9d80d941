"""Change freezes through the API: write/delete refused with the window named, read served,
approvals refused while a window covers the tier. The broker's clock is injected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.errors import ChangeFreeze
from tests.fixtures.broker import Broker
from tests.guard.helpers import AGENT, DELETE, READ, WRITE, epoch, guard_broker

NY = "America/New_York"
FREEZES = """\
- name: release freeze
  start: 2027-01-09T10:00
  end: 2027-01-09T14:00
  timezone: America/New_York
  tiers: [write]
- name: weekend deletes
  recurring: {days: [sat, sun], start: "00:00", end: "24:00"}
  timezone: America/New_York
  tiers: [delete]
"""
FRIDAY_EVENING = epoch("2027-01-08T20:00", NY)
SATURDAY_NOON = epoch("2027-01-09T12:00", NY)


@pytest.fixture()
def broker(tmp_path: Path) -> Broker:
    made, _ = guard_broker(tmp_path, FREEZES, at=SATURDAY_NOON)
    return made


def test_a_write_inside_a_window_is_refused_with_the_window_named(broker: Broker) -> None:
    response = broker.post("/v1/credentials", WRITE, agent=AGENT)
    assert response.status_code == 403
    assert response.json["error"] == "change_freeze"
    assert response.json["window"] == "release freeze"
    assert "'release freeze'" in response.json["message"]
    assert "America/New_York" in response.json["message"]
    assert broker.services.store.list_requests() == []  # nothing pending, nobody told


def test_a_delete_inside_a_recurring_window_is_refused(broker: Broker) -> None:
    broker.clock.now = epoch("2027-01-09T15:00", NY)  # after the write freeze, still Saturday
    assert broker.post("/v1/credentials", WRITE, agent=AGENT).status_code == 202
    response = broker.post("/v1/credentials", DELETE, agent=AGENT)
    assert response.status_code == 403
    assert response.json["error"] == "change_freeze"
    assert response.json["window"] == "weekend deletes"


def test_read_is_never_frozen(broker: Broker) -> None:
    response = broker.post("/v1/credentials", READ, agent=AGENT)
    assert response.status_code == 200, response.json
    assert "credentials" in response.json


@pytest.mark.parametrize(
    ("local", "status"),
    [
        ("2027-01-09T09:59:59", 202),
        ("2027-01-09T10:00:00", 403),
        ("2027-01-09T13:59:59", 403),
        ("2027-01-09T14:00:00", 202),
    ],
)
def test_the_api_honours_the_edges(broker: Broker, local: str, status: int) -> None:
    broker.clock.now = epoch(local, NY)
    assert broker.post("/v1/credentials", WRITE, agent=AGENT).status_code == status


def test_monday_deletes_are_not_frozen(broker: Broker) -> None:
    broker.clock.now = epoch("2027-01-11T00:00", NY)
    assert broker.post("/v1/credentials", DELETE, agent=AGENT).status_code == 202


def test_refusals_are_audited_with_the_code(broker: Broker) -> None:
    broker.post("/v1/credentials", WRITE, agent=AGENT)
    [record] = [r for r in broker.services.store.recent_audit() if r.action == "request"]
    assert (record.outcome, record.details["error"]) == ("denied", "change_freeze")
    assert record.actor == f"agent:{AGENT}"


def test_approvals_are_refused_while_a_window_covers_the_tier(broker: Broker) -> None:
    approvals = broker.services.approvals
    broker.clock.now = epoch("2027-01-08T23:50", NY)  # Friday
    delete_id = broker.post("/v1/credentials", DELETE, agent=AGENT).json["request_id"]
    broker.clock.now = epoch("2027-01-09T00:00", NY)  # Saturday: weekend deletes
    with pytest.raises(ChangeFreeze, match="weekend deletes") as refused:
        approvals.decide(delete_id, "carol", "approve", "link")
    assert refused.value.window == "weekend deletes"
    assert broker.services.store.approvals_for(delete_id) == []
    refusals = [
        r.reason
        for r in broker.services.store.audit_records(request_id=delete_id)
        if (r.action, r.outcome) == ("approve", "refused")
    ]
    assert len(refusals) == 1 and "weekend deletes" in refusals[0]
    # A deny only takes power away: always allowed.
    assert approvals.decide(delete_id, "carol", "deny", "link").record.status == "denied"


def test_approving_works_again_when_the_window_ends(broker: Broker) -> None:
    approvals = broker.services.approvals
    broker.clock.now = epoch("2027-01-09T09:50", NY)
    request_id = broker.post("/v1/credentials", WRITE, agent=AGENT).json["request_id"]
    broker.clock.now = epoch("2027-01-09T10:00", NY)
    with pytest.raises(ChangeFreeze, match="release freeze"):
        approvals.decide(request_id, "alice", "approve", "link")
    broker.clock.now = epoch("2027-01-09T13:59:59", NY)
    with pytest.raises(ChangeFreeze, match="release freeze"):
        approvals.decide(request_id, "alice", "approve", "link")
    broker.clock.now = epoch("2027-01-09T14:00", NY)  # still pending: the expiry is a day
    assert approvals.decide(request_id, "alice", "approve", "link").record.status == "approved"
    response = broker.client.post(
        f"/v1/requests/{request_id}/credentials", headers=broker.headers(AGENT)
    )
    assert response.status_code == 200, response.json


def test_credentials_approved_before_a_window_cannot_be_collected_inside_it(
    broker: Broker,
) -> None:
    broker.clock.now = epoch("2027-01-09T09:55", NY)
    request_id = broker.post("/v1/credentials", WRITE, agent=AGENT).json["request_id"]
    broker.services.approvals.decide(request_id, "alice", "approve", "link")
    broker.clock.now = epoch("2027-01-09T10:00", NY)
    path = f"/v1/requests/{request_id}/credentials"
    response: Any = broker.client.post(path, headers=broker.headers(AGENT))
    assert response.status_code == 403
    assert (response.json["error"], response.json["window"]) == ("change_freeze", "release freeze")
    assert broker.issuers["aws"].calls == []
