"""Another agent's request id reads exactly as an unknown one, on every endpoint taking one.

An agent must not learn that a request id exists when it is not its own: the answer (status,
code, body) is the one an unknown id gets, and the audit records the attempt with the
prober and the id, so the owner's timeline shows who tried.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.ids import new_request_id
from tests.approvals.flows import WRITE_PAYMENTS, open_request
from tests.fixtures.broker import READ_PAYMENTS, Broker

OWNER, PROBER = "payments-copilot", "ledger-maintainer"

# (method, path) of every agent endpoint that takes a request id.
ENDPOINTS = [
    ("GET", "/v1/requests/{id}"),
    ("GET", "/v1/requests/{id}?wait=0.2"),
    ("POST", "/v1/requests/{id}/credentials"),
    ("DELETE", "/v1/requests/{id}"),
    ("GET", "/v1/issuances/{id}"),
]


def _call(broker: Broker, method: str, path: str, request_id: str, agent: str) -> Any:
    return broker.client.open(
        path.format(id=request_id), method=method, headers=broker.headers(agent)
    )


def _answer(response: Any) -> tuple[int, dict[str, Any]]:
    """Status and body, without the HTTP correlation id (a new one on every call)."""
    body = dict(response.get_json())
    body.pop("request_id", None)
    return response.status_code, body


def _attempts(broker: Broker, request_id: str) -> list[Any]:
    """The audit's records of refused lookups of ``request_id``."""
    records = broker.services.store.audit_records(request_id=request_id)
    return [r for r in records if (r.action, r.outcome) == ("lookup", "refused")]


@pytest.fixture()
def owned(broker: Broker) -> dict[str, str]:
    """An approved write request (collectable) and a read issuance, both the owner's."""
    approved = open_request(broker, WRITE_PAYMENTS, agent=OWNER)
    broker.services.approvals.decide(approved, "alice", "approve", "link")
    issued = broker.post("/v1/credentials", READ_PAYMENTS, agent=OWNER)
    assert issued.status_code == 200, issued.get_json()
    return {"approved": approved, "issued": str(issued.get_json()["request_id"])}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("which", ["approved", "issued"])
def test_another_agents_id_answers_as_an_unknown_one(
    broker: Broker, owned: dict[str, str], method: str, path: str, which: str
) -> None:
    unknown = _answer(_call(broker, method, path, new_request_id(), PROBER))
    foreign = _answer(_call(broker, method, path, owned[which], PROBER))
    assert foreign == unknown
    assert foreign[0] == 404 and foreign[1]["error"] == "not_found"
    # The attempt is on the record, with who tried and on what.
    (record,) = _attempts(broker, owned[which])
    assert record.actor == f"agent:{PROBER}"
    assert record.reason == "another agent's request"
    assert record.details["operation"] in ("status", "collect", "withdraw", "issuance")


def test_the_probes_change_nothing_for_the_owner(broker: Broker, owned: dict[str, str]) -> None:
    for method, path in ENDPOINTS:
        for request_id in owned.values():
            _call(broker, method, path, request_id, PROBER)
    assert len(broker.issuers["aws"].calls) == 1  # the owner's read only
    state = _call(broker, "GET", "/v1/requests/{id}", owned["approved"], OWNER)
    assert state.get_json()["status"] == "approved"  # not withdrawn by the prober
    collected = _call(broker, "POST", "/v1/requests/{id}/credentials", owned["approved"], OWNER)
    assert collected.status_code == 200, collected.get_json()
    standing = _call(broker, "GET", "/v1/issuances/{id}", owned["issued"], OWNER)
    assert standing.get_json()["status"] == "active"


def test_an_unknown_id_is_recorded_too(broker: Broker) -> None:
    """Unknown ids are audited like foreign ones: the two answers cost the same work."""
    request_id = new_request_id()
    response = _call(broker, "POST", "/v1/requests/{id}/credentials", request_id, PROBER)
    assert response.status_code == 404
    (record,) = _attempts(broker, request_id)
    assert (record.outcome, record.reason) == ("refused", "no such request")
    assert record.details["operation"] == "collect"
