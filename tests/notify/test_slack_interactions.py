"""POST /slack/interactions: signed button clicks from Slack, and everything that is not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.notify.slack import ACTION_APPROVE, ACTION_DENY, ACTION_OPEN_PAGE, ACTION_REVIEW
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    audit_trail,
    collect,
    open_request,
    status,
)
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.slack import FakeSlack, interaction, make_slack_broker, sign

PATH = "/slack/interactions"


@pytest.fixture()
def slack_broker(tmp_path: Path, fake_slack: FakeSlack) -> Iterator[Broker]:
    made = make_slack_broker(tmp_path, fake_slack)
    yield made
    made.services.close()


def click(
    broker: Broker,
    body: bytes,
    timestamp: int | None = None,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    when = int(broker.clock()) if timestamp is None else timestamp
    signed = sign(body, when) if secret is None else sign(body, when, secret)
    return broker.client.post(PATH, data=body, headers=headers or signed)


def replies(fake_slack: FakeSlack) -> list[str]:
    return [str(c.body["text"]) for c in fake_slack.of_kind("response")]


def test_a_signed_approve_click_approves(slack_broker: Broker, fake_slack: FakeSlack) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(
        slack_broker, interaction("UALICE", ACTION_APPROVE, request_id, fake_slack.response_url)
    )
    assert response.status_code == 200, response.json
    assert response.json["ok"] is True and response.json["outcome"] == "approved"
    assert status(slack_broker, request_id)["status"] == "approved"
    [approval] = slack_broker.services.store.approvals_for(request_id)
    assert (approval.approver, approval.via) == ("alice", "slack")
    [reply] = fake_slack.of_kind("response")
    assert reply.body["response_type"] == "ephemeral" and reply.body["replace_original"] is False
    assert "Recorded your approval" in reply.body["text"]
    assert fake_slack.api("chat.update"), "the channel message shows the decision"
    assert collect(slack_broker, request_id).status_code == 200


def test_a_signed_deny_click_denies(slack_broker: Broker, fake_slack: FakeSlack) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(slack_broker, interaction("UBOB", ACTION_DENY, request_id))
    assert response.status_code == 200 and response.json["outcome"] == "denied"
    assert (
        slack_broker.services.approvals.get(request_id).reason == "denied by bob: denied in Slack"
    )


@pytest.mark.parametrize(
    "tamper",
    [
        "another secret",
        "another body",
        "no headers",
        "malformed signature",
        "malformed timestamp",
    ],
)
def test_a_wrongly_signed_click_is_refused(slack_broker: Broker, tamper: str) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    body = interaction("UALICE", ACTION_APPROVE, request_id)
    now = int(slack_broker.clock())
    headers = sign(body, now)
    if tamper == "another secret":
        headers = sign(body, now, "not-the-signing-secret")
    elif tamper == "another body":
        body = interaction("UBOB", ACTION_APPROVE, request_id)
    elif tamper == "no headers":
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
    elif tamper == "malformed signature":
        headers["X-Slack-Signature"] = "v1=" + headers["X-Slack-Signature"][3:]
    else:
        headers["X-Slack-Request-Timestamp"] = "12e3"
    response = slack_broker.client.post(PATH, data=body, headers=headers)
    assert response.status_code == 401, response.json
    assert response.json["error"] == "unauthenticated"
    assert status(slack_broker, request_id)["approvals_received"] == 0


@pytest.mark.parametrize("skew", [-(5 * 60 + 1), 5 * 60 + 1, -86400])
def test_a_click_older_or_newer_than_five_minutes_is_refused(
    slack_broker: Broker, skew: int
) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    body = interaction("UALICE", ACTION_APPROVE, request_id)
    response = click(slack_broker, body, timestamp=int(slack_broker.clock()) + skew)
    assert response.status_code == 401 and "5 minutes" in response.json["message"]
    assert status(slack_broker, request_id)["approvals_received"] == 0


def test_a_click_just_within_five_minutes_is_accepted(slack_broker: Broker) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    body = interaction("UALICE", ACTION_APPROVE, request_id)
    response = click(slack_broker, body, timestamp=int(slack_broker.clock()) - 5 * 60 + 1)
    assert response.status_code == 200


def test_a_replayed_click_is_refused(slack_broker: Broker, fake_slack: FakeSlack) -> None:
    request_id = open_request(slack_broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    body = interaction("UCAROL", ACTION_DENY, request_id)
    headers = sign(body, int(slack_broker.clock()))
    first = slack_broker.client.post(PATH, data=body, headers=headers)
    again = slack_broker.client.post(PATH, data=body, headers=headers)
    assert first.status_code == 200
    assert again.status_code == 401 and "replay" in again.json["message"]
    assert len(slack_broker.services.store.approvals_for(request_id)) == 1


def test_a_replay_is_refused_by_another_replica_too(tmp_path: Path, fake_slack: FakeSlack) -> None:
    first = make_slack_broker(tmp_path, fake_slack)
    request_id = open_request(first, WRITE_PAYMENTS)
    body = interaction("UBOB", ACTION_DENY, request_id)
    headers = sign(body, int(first.clock()))
    assert first.client.post(PATH, data=body, headers=headers).status_code == 200
    # A second broker on the same store (another replica) has never seen this click.
    second = make_slack_broker(tmp_path, fake_slack)
    assert second.client.post(PATH, data=body, headers=headers).status_code == 401
    first.services.close()
    second.services.close()


def test_a_slack_user_who_is_not_an_approver_is_refused(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(
        slack_broker, interaction("UMALLORY", ACTION_APPROVE, request_id, fake_slack.response_url)
    )
    assert response.status_code == 200
    assert response.json == {
        "ok": False,
        "outcome": "refused",
        "message": "You are not a configured approver.",
    }
    assert replies(fake_slack) == ["You are not a configured approver."]
    assert status(slack_broker, request_id)["approvals_received"] == 0
    refused = [r for r in slack_broker.services.store.audit_records() if r.action == "slack"]
    assert [r.actor for r in refused] == ["slack:UMALLORY"]


def test_an_approver_of_another_tier_is_refused(slack_broker: Broker) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(slack_broker, interaction("UCAROL", ACTION_APPROVE, request_id))
    assert response.json["outcome"] == "refused"
    assert "carol is not an approver for tier write" in response.json["message"]
    assert ("approve", "refused") in audit_trail(slack_broker, request_id)


def test_delete_cannot_be_approved_inside_slack_but_the_answer_is_a_personal_link(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    response = click(
        slack_broker, interaction("UCAROL", ACTION_APPROVE, request_id, fake_slack.response_url)
    )
    assert response.json["outcome"] == "refused"
    assert "cannot be approved inside Slack" in response.json["message"]
    assert "/approve/" not in json.dumps(response.json)  # the link goes to Slack only
    assert status(slack_broker, request_id, LEDGER_AGENT)["approvals_received"] == 0
    [reply] = replies(fake_slack)
    token = reply.split("/approve/", 1)[1].split("|", 1)[0]
    claims = slack_broker.services.links.parse(token, now=slack_broker.clock())
    assert (claims.approver, claims.request_id) == ("carol", request_id)
    assert slack_broker.client.get(f"/approve/{token}").status_code == 200


def test_delete_can_be_denied_inside_slack(slack_broker: Broker) -> None:
    request_id = open_request(slack_broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    response = click(slack_broker, interaction("UDAVE", ACTION_DENY, request_id))
    assert response.json["outcome"] == "denied"


def test_review_answers_with_the_clickers_own_link(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(
        slack_broker, interaction("UBOB", ACTION_REVIEW, request_id, fake_slack.response_url)
    )
    assert response.status_code == 200 and response.json["outcome"] == "link"
    assert "/approve/" not in response.get_data(as_text=True)
    [reply] = fake_slack.of_kind("response")
    assert reply.body["response_type"] == "ephemeral"
    token = reply.body["text"].split("/approve/", 1)[1].split("|", 1)[0]
    assert slack_broker.services.links.parse(token).approver == "bob"
    assert ("link", "sent") in audit_trail(slack_broker, request_id)
    assert token not in json.dumps([r.details for r in slack_broker.services.store.audit_records()])


def test_review_gives_no_link_to_who_may_not_approve(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(
        slack_broker, interaction("UERIN", ACTION_REVIEW, request_id, fake_slack.response_url)
    )
    assert response.json["outcome"] == "refused"
    assert "/approve/" not in json.dumps(fake_slack.everything_sent())


def test_a_response_url_outside_slack_is_never_called(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(
        slack_broker,
        interaction("UBOB", ACTION_REVIEW, request_id, "https://attacker.example/collect"),
    )
    assert response.status_code == 200  # handled; the link simply is not sent anywhere
    assert fake_slack.of_kind("response") == []


def test_the_page_button_click_is_acknowledged_and_ignored(slack_broker: Broker) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    response = click(slack_broker, interaction("UALICE", ACTION_OPEN_PAGE, request_id))
    assert response.json == {"ok": True, "outcome": "ignored"}
    assert status(slack_broker, request_id)["approvals_received"] == 0


def payload(value: object) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"payload": json.dumps(value)}).encode()


JUNK = [
    b"",
    b"not a form",
    b"payload=",
    b"payload=%7B",
    b"payload=%FF%FE",
    payload([1, 2]),
    payload({"type": "block_actions"}),
    payload({"type": "block_actions", "user": {"id": "UALICE"}, "actions": []}),
    payload({"type": "block_actions", "user": {"id": "UALICE"}, "actions": ["x"]}),
    payload({"type": "block_actions", "user": {"id": 7}, "actions": [{"action_id": "x"}]}),
    payload(
        {
            "type": "block_actions",
            "user": {"id": "UALICE"},
            "actions": [{"action_id": "broker_approve", "value": "req_../../etc"}],
        }
    ),
    payload(
        {
            "type": "block_actions",
            "user": {"id": "<!channel>"},
            "actions": [{"action_id": "broker_approve", "value": "req_" + "a" * 26}],
        }
    ),
    payload(
        {
            "type": "block_actions",
            "user": {"id": "UALICE"},
            "actions": [{"action_id": "drop_tables", "value": "req_" + "a" * 26}],
        }
    ),
    b"payload=" + b"%5B" * 5000,
    b"a=1&" * 50,
]


@pytest.mark.parametrize("body", JUNK, ids=range(len(JUNK)))
def test_signed_junk_is_a_clean_400(slack_broker: Broker, body: bytes) -> None:
    response = click(slack_broker, body)
    assert response.status_code == 400, (body[:60], response.status_code)
    assert response.json["error"] == "bad_request"


def test_other_interaction_types_are_acknowledged(slack_broker: Broker) -> None:
    response = click(slack_broker, payload({"type": "view_submission", "user": {"id": "U1"}}))
    assert response.status_code == 200 and response.json["outcome"] == "ignored"


def test_a_click_on_an_unknown_request_is_refused_cleanly(slack_broker: Broker) -> None:
    response = click(slack_broker, interaction("UALICE", ACTION_APPROVE, "req_" + "a" * 26))
    assert response.status_code == 200
    assert response.json == {"ok": False, "outcome": "refused", "message": "no such request"}


def test_an_oversized_body_is_413(slack_broker: Broker) -> None:
    response = click(slack_broker, b"payload=" + b"x" * 70_000)
    assert response.status_code == 413


def test_without_a_signing_secret_the_endpoint_does_not_exist(tmp_path: Path) -> None:
    made = make_broker(tmp_path)  # no Slack configured
    body = interaction("UALICE", ACTION_APPROVE, "req_" + "a" * 26)
    response = made.client.post(PATH, data=body, headers=sign(body, int(made.clock())))
    assert response.status_code == 404
    made.services.close()
