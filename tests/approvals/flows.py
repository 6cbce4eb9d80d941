"""Steps of an escalation that many tests share: ask, get a link, read the page, decide."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

from tests.fixtures.broker import READ_PAYMENTS, Broker

WRITE_PAYMENTS: dict[str, Any] = {
    **READ_PAYMENTS,
    "tier": "write",
    "resources": ["arn:aws:s3:::payments-prod-invoices/2026/11/*"],
    "justification": "re-upload the corrected November batch",
}
# Ledger's delete tier: 2 distinct approvers from group dba (carol, dave), a 15 min delay,
# no approval inside Slack, and no change-freeze windows (tests do not depend on the day).
DELETE_LEDGER: dict[str, Any] = {
    "service": "ledger",
    "environment": "prod",
    "tier": "delete",
    "backend": "vault",
    "resources": ["ledger/prod/obsolete-key"],
    "justification": "remove the leaked, rotated key",
}
LEDGER_AGENT = "ledger-maintainer"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def open_request(broker: Broker, body: dict[str, Any], agent: str = "payments-copilot") -> str:
    response = broker.post("/v1/credentials", body, agent=agent)
    assert response.status_code == 202, response.json
    return str(response.json["request_id"])


def link_token(broker: Broker, request_id: str, approver: str) -> str:
    return broker.services.links.mint(request_id, approver, now=broker.clock())


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no decision form"
    return match.group(1)


def approve_via_page(
    client: FlaskClient, token: str, decision: str = "approve", reason: str = ""
) -> Any:
    """Open the link (GET), then submit the form (POST) as the browser would."""
    page = client.get(f"/approve/{token}")
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(
        f"/approve/{token}",
        data={
            "csrf_token": csrf_from(page.get_data(as_text=True)),
            "decision": decision,
            "reason": reason,
        },
    )


def collect(broker: Broker, request_id: str, agent: str = "payments-copilot") -> Any:
    return broker.client.post(
        f"/v1/requests/{request_id}/credentials", headers=broker.headers(agent)
    )


def status(broker: Broker, request_id: str, agent: str = "payments-copilot") -> dict[str, Any]:
    response = broker.client.get(f"/v1/requests/{request_id}", headers=broker.headers(agent))
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def audit_trail(broker: Broker, request_id: str) -> list[tuple[str, str]]:
    return [
        (r.action, r.outcome) for r in broker.services.store.audit_records(request_id=request_id)
    ]
