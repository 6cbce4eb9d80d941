"""The Slack notifier against a local server speaking Slack's Web API and webhooks."""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from broker.approvals.links import LinkSigner
from broker.config import SlackSettings
from broker.notify.base import ApprovalNotice, LogNotifier, NotificationFailed
from broker.notify.slack import ACTION_APPROVE, ACTION_REVIEW, SlackNotifier, escape
from broker.wiring import build_notifier
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    audit_trail,
    collect,
    open_request,
)
from tests.fixtures.broker import Broker
from tests.fixtures.broker import test_settings as broker_settings
from tests.fixtures.slack import BOT_TOKEN, DEFAULT_CHANNEL, FakeSlack, SlackCall, make_slack_broker

INJECTION = (
    "<!channel> <!here> <@U0BADBAD> <#C0GENERAL> <https://evil.example/login|the runbook> "
    "*bold* _italic_ ~strike~ `code` ```block``` > quote & <script>alert(1)</script>"
)


def texts(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every text object in a message's blocks."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn") and "text" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks)
    return found


def actions(call: SlackCall) -> list[dict[str, Any]]:
    return [
        element
        for block in call.body["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


@pytest.fixture()
def slack_broker(tmp_path: Path, fake_slack: FakeSlack) -> Any:
    made = make_slack_broker(tmp_path, fake_slack)
    yield made
    made.services.close()


def test_a_request_posts_its_summary_with_buttons_to_the_tiers_channel(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    [call] = fake_slack.api("chat.postMessage")
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert call.body["channel"] == "#payments-approvals"
    assert call.body["unfurl_links"] is False
    assert [(a["action_id"], a["value"]) for a in actions(call)] == [
        (ACTION_APPROVE, request_id),
        ("broker_deny", request_id),
        (ACTION_REVIEW, request_id),
    ]
    shown = "\n".join(t["text"] for t in texts(call.body["blocks"]))
    for expected in (
        "agent:payments-copilot",
        "iss=broker-local",
        "payments / prod / us-east-1 / aws",
        "Tier: write",
        "Duration: 30m",
        "0 of 1 received, 1 still needed",
        WRITE_PAYMENTS["justification"],
        WRITE_PAYMENTS["resources"][0],
        "adds s3:PutObject on arn:aws:s3:::payments-prod-invoices/2026/11/* in us-east-1",
        f"<http://127.0.0.1:8080/requests/{request_id}|request page>",
    ):
        assert expected in shown, expected
    # The channel message carries no personal link: anyone in the channel reads it.
    assert "/approve/" not in fake_slack.everything_sent()
    record = slack_broker.services.approvals.get(request_id)
    assert record.notification["channel"].startswith("C") and record.notification["ts"]
    assert ("notify", "sent") in audit_trail(slack_broker, request_id)


def test_tiers_without_slack_approval_get_only_the_review_button(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    open_request(slack_broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    [call] = fake_slack.api("chat.postMessage")
    assert call.body["channel"] == DEFAULT_CHANNEL  # the ledger scope names no channel
    assert [a["action_id"] for a in actions(call)] == [ACTION_REVIEW]
    assert "0 of 2 received, 2 still needed; then a 15m delay" in json.dumps(call.body)


def test_direct_messages_carry_each_approvers_own_link(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    made = make_slack_broker(tmp_path, fake_slack, direct=("alice",))
    request_id = open_request(made, WRITE_PAYMENTS)
    channel, direct = fake_slack.api("chat.postMessage")
    assert channel.body["channel"] == "#payments-approvals"
    assert direct.body["channel"] == "UALICE"
    [page_button] = [a for a in actions(direct) if "url" in a]
    token = page_button["url"].rsplit("/approve/", 1)[1]
    claims = made.services.links.parse(token, now=made.clock())
    assert (claims.request_id, claims.approver) == (request_id, "alice")
    assert made.client.get(f"/approve/{token}").status_code == 200
    handle = made.services.approvals.get(request_id).notification
    assert handle["direct"] == [{"channel": handle["direct"][0]["channel"], "ts": direct_ts(made)}]
    assert token not in json.dumps(handle)  # the stored handle never holds a link
    made.services.close()


def direct_ts(made: Broker) -> str:
    return str(made.services.store.list_requests()[0].notification["direct"][0]["ts"])


def test_the_message_is_updated_when_the_request_is_decided(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    made = make_slack_broker(tmp_path, fake_slack, direct=("bob",))
    request_id = open_request(made, WRITE_PAYMENTS)
    handle = made.services.approvals.get(request_id).notification
    made.services.approvals.decide(request_id, "alice", "approve", "link")
    updates = fake_slack.api("chat.update")
    assert {(u.body["channel"], u.body["ts"]) for u in updates} == {
        (handle["channel"], handle["ts"]),
        (handle["direct"][0]["channel"], handle["direct"][0]["ts"]),
    }
    for update in updates:
        assert actions(update) == []  # decided: no more buttons
        assert "Status: approved." in json.dumps(update.body)
    assert collect(made, request_id).status_code == 200
    assert "Status: collected." in json.dumps(fake_slack.api("chat.update")[-1].body)
    made.services.close()


def test_each_approval_of_a_multi_approver_request_shows_on_the_message(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    request_id = open_request(slack_broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    slack_broker.services.approvals.decide(request_id, "carol", "approve", "link")
    [update] = fake_slack.api("chat.update")
    assert "1 of 2 approvals so far" in json.dumps(update.body)
    assert [a["action_id"] for a in actions(update)] == [ACTION_REVIEW]  # still open


def test_the_message_says_when_a_request_expires(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    open_request(slack_broker, WRITE_PAYMENTS)
    slack_broker.clock.advance(30 * 60)
    assert slack_broker.services.approvals.sweep() == 1
    [update] = fake_slack.api("chat.update")
    assert "Status: expired. expired before anyone decided" in json.dumps(update.body)


def test_injected_justification_is_inert_in_the_payload(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    open_request(slack_broker, {**WRITE_PAYMENTS, "justification": INJECTION})
    [call] = fake_slack.api("chat.postMessage")
    carrying = [t for t in texts(call.body["blocks"]) if "alert(1)" in t["text"]]
    assert carrying, "the justification is shown"
    for text in carrying:
        assert text["type"] == "plain_text"  # Slack never parses plain_text for mrkdwn
        assert text["emoji"] is False
        assert "<" not in text["text"] and ">" not in text["text"]
        assert escape("<!channel>") in text["text"]
    sent = fake_slack.everything_sent()
    for raw in ("<!channel>", "<!here>", "<@U0BADBAD>", "<#C0GENERAL>", "<https://evil", "<script"):
        assert raw not in sent, raw
    assert "alert(1)" not in call.body["text"]  # the notification text is the broker's own


def test_a_slack_error_is_audited_without_secrets_and_the_request_stands(
    slack_broker: Broker, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_slack.fail_with = "channel_not_found"
    request_id = open_request(slack_broker, WRITE_PAYMENTS)
    [failure] = [
        r
        for r in slack_broker.services.store.audit_records(request_id=request_id)
        if r.action == "notify"
    ]
    assert failure.outcome == "failed"
    assert failure.reason == "slack chat.postMessage failed: channel_not_found"
    assert BOT_TOKEN not in caplog.text
    # The request is pending all the same: the approver can use a link from the CLI.
    assert slack_broker.services.approvals.get(request_id).status == "pending"


def test_an_unreachable_slack_is_a_notification_failure(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens
    settings = broker_settings(
        tmp_path,
        slack=SlackSettings(
            bot_token=BOT_TOKEN,
            signing_secret="x",
            api_base_url=f"http://127.0.0.1:{port}/api/",
            default_channel="#alerts",
        ),
    )
    notifier = SlackNotifier(settings, LinkSigner(b"k" * 32, settings.public_url, 60))
    with pytest.raises(NotificationFailed) as raised:
        notifier.alert("breaker tripped")
    assert str(raised.value) == "slack chat.postMessage failed: URLError"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_webhook_mode_posts_then_follows_up(tmp_path: Path, fake_slack: FakeSlack) -> None:
    made = make_slack_broker(tmp_path, fake_slack, webhook=True)
    request_id = open_request(made, WRITE_PAYMENTS)
    [posted] = fake_slack.of_kind("webhook")
    assert [a["action_id"] for a in actions(posted)] == [
        ACTION_APPROVE,
        "broker_deny",
        ACTION_REVIEW,
    ]
    assert made.services.approvals.get(request_id).notification == {"webhook": True}
    made.services.approvals.decide(request_id, "alice", "approve", "link")
    follow_up = fake_slack.of_kind("webhook")[-1]
    assert (
        f"Request {request_id}" in follow_up.body["text"] and "approved" in follow_up.body["text"]
    )
    assert fake_slack.api("chat.postMessage") == []  # no bot token: no Web API calls
    made.services.close()


def test_a_failing_webhook_names_the_status_not_the_url(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    made = make_slack_broker(tmp_path, fake_slack, webhook=True)
    fake_slack.webhook_status = 500
    request_id = open_request(made, WRITE_PAYMENTS)
    [failure] = [
        r for r in made.services.store.audit_records(request_id=request_id) if r.action == "notify"
    ]
    assert failure.reason == "slack webhook post failed: HTTP 500"
    made.services.close()


def test_alerts_go_to_the_default_channel_escaped(
    slack_broker: Broker, fake_slack: FakeSlack
) -> None:
    slack_broker.services.notifier.alert("agent <@U1> tripped the breaker", ["3 denials <!here>"])
    [call] = fake_slack.api("chat.postMessage")
    assert call.body["channel"] == DEFAULT_CHANNEL
    assert (
        "<@U1>" not in fake_slack.everything_sent()
        and "<!here>" not in fake_slack.everything_sent()
    )


def test_the_sdk_never_logs_personal_links(
    tmp_path: Path, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    made = make_slack_broker(tmp_path, fake_slack, direct=("alice", "bob"))
    open_request(made, WRITE_PAYMENTS)
    links = [
        a["url"] for call in fake_slack.api("chat.postMessage") for a in actions(call) if "url" in a
    ]
    assert len(links) == 2
    for link in links:
        assert link.rsplit("/", 1)[1] not in caplog.text
    assert BOT_TOKEN not in caplog.text
    made.services.close()


def test_the_wiring_chooses_the_notifier_from_the_settings(tmp_path: Path) -> None:
    base = broker_settings(tmp_path)
    assert isinstance(build_notifier(base), LogNotifier)
    bot = build_notifier(
        replace(base, slack=SlackSettings(bot_token=BOT_TOKEN, signing_secret="s"))
    )
    assert isinstance(bot, SlackNotifier) and bot.client is not None and bot.webhook is None
    hook = build_notifier(
        replace(base, slack=SlackSettings(webhook_url="https://hooks.slack.com/services/T/B/x"))
    )
    assert isinstance(hook, SlackNotifier) and hook.client is None and hook.webhook is not None


def test_a_notice_with_many_resources_stays_within_slacks_limits() -> None:
    notice = ApprovalNotice(
        request_id="req_" + "a" * 26,
        agent="agent:x" * 100,
        agent_claims={f"claim{i}": "v" * 300 for i in range(20)},
        service="payments",
        environment="prod",
        region="us-east-1",
        tier="write",
        backend="aws",
        justification="j" * 5000,
        resources=[f"arn:aws:s3:::bucket/{i}/" + "k" * 200 for i in range(100)],
        adds=[f"adds s3:PutObject on arn:aws:s3:::bucket/{i}" for i in range(300)],
        duration_seconds=1800,
        approvals_required=1,
        approvals_received=0,
        delay_seconds=0,
        page_url="https://broker.example.com/requests/x",
    )
    from broker.notify.slack import message_blocks

    blocks = message_blocks(notice)
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if "text" in block:
            assert len(block["text"]["text"]) <= 3000
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000
    shown = json.dumps(blocks)
    assert "more (see the approval page)" in shown
    assert shown.count("arn:aws:s3:::bucket/") > 10  # as many as fit are listed
