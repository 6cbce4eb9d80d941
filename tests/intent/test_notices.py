"""What approvers are told of an intent in Slack (a local server speaking Slack's Web API)
and on the page: replacements first, the hash, and the impact once measured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.approvals.flows import link_token
from tests.fixtures.broker import Broker
from tests.fixtures.slack import FakeSlack, make_slack_broker
from tests.intent.support import ACME, fixture, plan_request
from tests.scopes.factory import write_scope

AGENT = "acme"
REPLACES = "REPLACES aws_dynamodb_table.ledger: its data will be lost"


@pytest.fixture()
def slack_acme(tmp_path: Path, fake_slack: FakeSlack) -> Iterator[Broker]:
    (tmp_path / "scopes").mkdir()
    write_scope(tmp_path / "scopes", ACME, "acme.yaml")
    made = make_slack_broker(tmp_path, fake_slack)
    impact = made.services.approvals.impact
    assert impact is not None
    impact.run = lambda work: None  # type: ignore[attr-defined]  # measured by hand below
    yield made
    made.services.close()


def section_texts(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]


def test_slack_shows_the_replacement_first_and_the_hash(
    slack_acme: Broker, fake_slack: FakeSlack
) -> None:
    response = slack_acme.post(
        "/v1/credentials", plan_request(fixture("plan_dynamodb_replace")), agent=AGENT
    )
    assert response.status_code == 202, response.get_json()
    sha256 = response.get_json()["intent"]["sha256"]
    [call] = fake_slack.api("chat.postMessage")
    blocks = call.body["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[1]["text"]["text"] == REPLACES  # before anything else
    assert "Approval needed: delete on acme/prod" in blocks[0]["text"]["text"]
    assert sha256 in json.dumps(blocks)
    assert "impact being measured" in json.dumps(blocks)
    assert "Resources:\n(those the intent names)" in section_texts(blocks)


def test_the_measured_impact_updates_the_message_and_the_page(
    slack_acme: Broker, fake_slack: FakeSlack
) -> None:
    intent = {
        "operations": [
            {"action": "s3:DeleteObject", "resource": "arn:aws:s3:::acme-prod-docs/tmp/*"}
        ]
    }
    body = {**plan_request({}), "intent": intent}
    request_id = slack_acme.post("/v1/credentials", body, agent=AGENT).get_json()["request_id"]
    services = slack_acme.services
    stored = services.store.set_impact(
        request_id, {"status": "done", "lines": ["deletes up to 1,243 objects, 4.2 GB"]}
    )
    assert stored is not None and services.approvals.impact is not None
    services.approvals.impact.updated(stored)  # type: ignore[attr-defined]
    [update] = fake_slack.api("chat.update")
    assert "Impact:\n\u2022 deletes up to 1,243 objects, 4.2 GB" in section_texts(
        update.body["blocks"]
    )
    page = slack_acme.client.get(f"/approve/{link_token(slack_acme, request_id, 'alice')}")
    html = page.get_data(as_text=True)
    assert "deletes up to 1,243 objects, 4.2 GB" in html
    assert html.index("deletes up to 1,243 objects") < html.index('id="agent"')


def test_a_measurement_that_never_reports_is_called_unknown(slack_acme: Broker) -> None:
    intent = {
        "operations": [
            {"action": "s3:DeleteObject", "resource": "arn:aws:s3:::acme-prod-docs/tmp/*"}
        ]
    }
    body = {**plan_request({}), "intent": intent}
    request_id = slack_acme.post("/v1/credentials", body, agent=AGENT).get_json()["request_id"]
    link = f"/approve/{link_token(slack_acme, request_id, 'alice')}"
    assert "impact being measured" in slack_acme.client.get(link).get_data(as_text=True)
    slack_acme.clock.advance(slack_acme.services.settings.impact_report_seconds + 1)
    link = f"/approve/{link_token(slack_acme, request_id, 'alice')}"
    html = slack_acme.client.get(link).get_data(as_text=True)
    assert "impact unknown: the measurement did not report" in html
