"""Tell approvers through Slack: a Block Kit message per request, updated as it is decided.

Two modes, chosen from the settings:

- **Web API** (bot token): ``chat.postMessage`` to the tier's approval channel, a direct
  message to each approver who asked for one (carrying that approver's own personal link),
  and ``chat.update`` of those messages when the request is decided, expires or is
  collected;
- **incoming webhook** (only a webhook URL): the same message, then a short follow-up
  when the request closes (a webhook cannot edit what it posted).

Everything an agent controls (agent name and claims, justification, resources, an
approver's deny reason) goes into ``plain_text`` objects, which Slack never parses for
mrkdwn, mentions or links, and is escaped (``&``, ``<``, ``>``) on top. Slack errors become
:class:`NotificationFailed` with a short, secret-free reason: never the token, never the
webhook URL, never a link token.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web import WebClient
from slack_sdk.webhook import WebhookClient

from broker.approvals.links import LinkSigner
from broker.config import Settings
from broker.notify.base import ApprovalNotice, NotificationFailed

log = logging.getLogger(__name__)

ACTION_APPROVE = "broker_approve"
ACTION_DENY = "broker_deny"
ACTION_REVIEW = "broker_review"
ACTION_OPEN_PAGE = "broker_open_page"  # a URL button: Slack still reports the click
CLOSED_STATUSES = frozenset({"approved", "denied", "expired", "collected", "cancelled"})
# A decision (or its absence) each approver told directly is told of again, as a new message.
DECIDED_STATUSES = frozenset({"approved", "denied", "expired", "cancelled"})
TIMEOUT_SECONDS = 10

# Block Kit limits (with room to spare): section text 3000, a field 2000, header 150.
MAX_SECTION = 2900
MAX_FIELD = 1900
MAX_HEADER = 150
MAX_LIST_ITEMS = 25
_SLACK_ERROR = re.compile(r"[a-z0-9_]{1,64}")
HOOKS_ORIGIN = "https://hooks.slack.com"


# -- message composition (pure) -------------------------------------------------------


def escape(text: str) -> str:
    """Escape Slack's control characters, so text cannot form a link, mention or command."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def plain(text: str, limit: int = MAX_SECTION) -> dict[str, Any]:
    """A plain_text object: Slack renders it literally (no mrkdwn, mentions, links, emoji)."""
    return {"type": "plain_text", "text": clip(escape(text), limit) or " ", "emoji": False}


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _bullets(items: Sequence[str], empty: str, budget: int = MAX_SECTION - 200) -> str:
    """A bullet list that fits ``budget`` characters (escaped) and says what it left out."""
    if not items:
        return empty
    shown: list[str] = []
    used = 0
    for item in items[:MAX_LIST_ITEMS]:
        line = f"\u2022 {clip(item, 300)}"
        if used + len(escape(line)) + 1 > budget:
            break
        shown.append(line)
        used += len(escape(line)) + 1
    if len(shown) < len(items):
        shown.append(f"\u2026 and {len(items) - len(shown)} more (see the approval page)")
    return "\n".join(shown)


def approvals_line(notice: ApprovalNotice) -> str:
    still = max(0, notice.approvals_required - notice.approvals_received)
    line = (
        f"{notice.approvals_received} of {notice.approvals_required} received, {still} still needed"
    )
    if notice.delay_seconds:
        line += f"; then a {_duration(notice.delay_seconds)} delay before collection"
    return line


def fallback_text(notice: ApprovalNotice, status: str = "pending") -> str:
    """The notification text (shown where blocks are not): broker-controlled names only."""
    what = f"{notice.tier} on {notice.service}/{notice.environment}"
    if status == "pending":
        return escape(f"Approval needed: {what} (request {notice.request_id})")
    return escape(f"Request {notice.request_id} ({what}): {status}")


def summary_blocks(notice: ApprovalNotice) -> list[dict[str, Any]]:
    """What approvers need to decide, every agent-controlled string in plain_text."""
    claims = ", ".join(f"{k}={v}" for k, v in sorted(notice.agent_claims.items())) or "none"
    where = " / ".join(
        [notice.service, notice.environment, notice.region or "(no region)", notice.backend]
    )
    return [
        {
            "type": "header",
            "text": plain(
                f"Approval needed: {notice.tier} on {notice.service}/{notice.environment}",
                MAX_HEADER,
            ),
        },
        *intent_blocks(notice),
        {
            "type": "section",
            "fields": [
                plain(f"Agent: {notice.agent}", MAX_FIELD),
                plain(f"Identity claims: {claims}", MAX_FIELD),
                plain(f"Service / environment / region / backend: {where}", MAX_FIELD),
                plain(f"Tier: {notice.tier}", MAX_FIELD),
                plain(f"Duration: {_duration(notice.duration_seconds)}", MAX_FIELD),
                plain(f"Approvals: {approvals_line(notice)}", MAX_FIELD),
            ],
        },
        {
            "type": "section",
            "text": plain("Justification:\n" + (notice.justification or "(none given)")),
        },
        {
            "type": "section",
            "text": plain(
                "Resources:\n"
                + _bullets(
                    list(notice.resources),
                    "(those the intent names)" if notice.intent else "(none named)",
                )
            ),
        },
        {
            "type": "section",
            "text": plain(
                "What this adds to the read tier:\n"
                + _bullets(list(notice.adds), "(nothing beyond read could be computed)")
            ),
        },
        {
            "type": "context",
            "elements": [
                {
                    # Broker-controlled: the configured public URL and a validated request id.
                    "type": "mrkdwn",
                    "text": f"Request `{notice.request_id}` \u00b7 "
                    + (
                        f"grant sha256 `{notice.grant_sha256[:12]}` \u00b7 "
                        if notice.grant_sha256
                        else ""
                    )
                    + f"<{escape(notice.page_url)}|request page>",
                    "verbatim": True,
                }
            ],
        },
    ]


def intent_blocks(notice: ApprovalNotice) -> list[dict[str, Any]]:
    """What the agent will do, right below the header: replacements first, then what it
    destroys, the measured impact, everything else, and the hash approvers approve."""
    intent = notice.intent
    if intent is None:
        return []
    if intent.broken:
        return [{"type": "section", "text": plain(intent.broken)}]
    blocks: list[dict[str, Any]] = []
    if intent.replacements:
        blocks.append({"type": "section", "text": plain("\n".join(intent.replacements))})
    if intent.destroys:
        blocks.append(
            {"type": "section", "text": plain("Destroys:\n" + _bullets(intent.destroys, ""))}
        )
    if intent.impact:
        blocks.append({"type": "section", "text": plain("Impact:\n" + _bullets(intent.impact, ""))})
    blocks.append(
        {
            "type": "section",
            "text": plain(
                f"Everything else it will do ({intent.source}):\n"
                + _bullets(intent.others, "(nothing else)")
            ),
        }
    )
    blocks.append(
        {
            "type": "context",
            "elements": [plain(f"Intent sha256 {intent.sha256}: you approve exactly this")],
        }
    )
    return blocks


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": False},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def action_block(notice: ApprovalNotice, personal_link: str | None = None) -> dict[str, Any]:
    """Approve/Deny (only where the tier allows deciding inside Slack), then the page.

    In a channel the page button is "Review", which answers with the clicking approver's
    own link; in a direct message it is that approver's link itself.
    """
    elements: list[dict[str, Any]] = []
    if notice.slack_approval:
        approve = _button("Approve", ACTION_APPROVE, notice.request_id, "primary")
        approve["confirm"] = {
            "title": {"type": "plain_text", "text": "Approve this request?"},
            "text": plain(
                f"Grant {notice.tier} on {notice.service}/{notice.environment} to "
                f"{notice.agent} for {_duration(notice.duration_seconds)}"
                + (f", for intent {notice.intent.short_hash}" if notice.intent else "")
                + ".",
                300,
            ),
            "confirm": {"type": "plain_text", "text": "Approve"},
            "deny": {"type": "plain_text", "text": "Cancel"},
        }
        elements += [approve, _button("Deny", ACTION_DENY, notice.request_id, "danger")]
    if personal_link is None:
        elements.append(_button("Review", ACTION_REVIEW, notice.request_id))
    else:
        page = _button("Open the approval page", ACTION_OPEN_PAGE, notice.request_id)
        page["url"] = personal_link
        elements.append(page)
    return {
        "type": "actions",
        "block_id": f"broker_request:{notice.request_id}",
        "elements": elements,
    }


def status_block(status: str, detail: str) -> dict[str, Any]:
    # The detail may quote an approver's deny reason: plain text.
    return {"type": "section", "text": plain(f"Status: {status}. {detail}")}


def message_blocks(
    notice: ApprovalNotice,
    status: str = "pending",
    detail: str = "",
    personal_link: str | None = None,
) -> list[dict[str, Any]]:
    """The whole message: summary, then buttons while open or the outcome once closed."""
    blocks = summary_blocks(notice)
    if status != "pending":
        blocks.append(status_block(status, detail))
    if status == "pending":
        if detail:
            blocks.append(status_block(status, detail))
        blocks.append(action_block(notice, personal_link))
    return blocks


# -- the notifier (I/O) ---------------------------------------------------------------


def quiet_logger() -> logging.Logger:
    """slack_sdk logs whole request bodies at DEBUG (DMs carry personal links): never."""
    logger = logging.getLogger("broker.notify.slack.sdk")
    logger.setLevel(logging.WARNING)
    return logger


def slack_failure(what: str, error: Exception) -> NotificationFailed:
    """A secret-free reason: Slack's error code or the exception's type, nothing else."""
    if isinstance(error, SlackApiError):
        code = error.response.get("error") if error.response is not None else None
        reason = code if isinstance(code, str) and _SLACK_ERROR.fullmatch(code) else "error"
    else:
        reason = type(error).__name__
    return NotificationFailed(f"slack {what} failed: {reason}")


class SlackNotifier:
    """The Notifier on Slack; the link signer mints each direct message's personal link."""

    def __init__(
        self,
        settings: Settings,
        signer: LinkSigner,
        client: WebClient | None = None,
        webhook: WebhookClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        slack = settings.slack
        if client is None and webhook is None:
            if slack.bot_token:
                client = WebClient(
                    token=slack.bot_token,
                    base_url=slack.api_base_url,
                    timeout=TIMEOUT_SECONDS,
                    logger=quiet_logger(),
                )
            elif slack.webhook_url:
                webhook = WebhookClient(
                    slack.webhook_url, timeout=TIMEOUT_SECONDS, logger=quiet_logger()
                )
            else:
                raise ValueError("SlackNotifier needs a bot token or an incoming-webhook URL")
        self.settings = settings
        self.signer = signer
        self.client = client
        self.webhook = webhook
        self.clock = clock

    @classmethod
    def configured(cls, settings: Settings) -> bool:
        return bool(settings.slack.bot_token or settings.slack.webhook_url)

    # -- Notifier ---------------------------------------------------------------------

    def request_opened(self, notice: ApprovalNotice) -> Mapping[str, Any]:
        blocks = message_blocks(notice)
        text = fallback_text(notice)
        if self.client is None:
            self._send_webhook("webhook post", text, blocks)
            return {"webhook": True}
        handle: dict[str, Any] = {}
        channel = notice.channel or self.settings.slack.default_channel
        if channel:
            posted = self._post("chat.postMessage", channel, text, blocks)
            handle.update(posted)
        direct = []
        for user_id in notice.direct_slack_users:
            approver = self.settings.approver_by_slack_id(user_id)
            if approver is None:
                continue
            token = self.signer.mint(notice.request_id, approver.name, now=self.clock())
            personal = message_blocks(notice, personal_link=self.signer.url(token))
            try:
                direct.append(self._post("chat.postMessage", user_id, text, personal))
            except NotificationFailed as e:
                # The channel message (and the Review button) still reach this approver.
                log.warning("direct message failed: %s", e, extra={"approver": approver.name})
        if direct:
            handle["direct"] = direct
        if not handle:
            raise NotificationFailed("slack: no approval channel and no direct message sent")
        return handle

    def request_updated(
        self, notice: ApprovalNotice, status: str, detail: str, handle: Mapping[str, Any]
    ) -> None:
        if self.client is None:
            if status in CLOSED_STATUSES:
                self._send_webhook(
                    "webhook post",
                    fallback_text(notice, status),
                    [status_block(status, f"{detail} (request {notice.request_id})")],
                )
            return
        text = fallback_text(notice, status)
        blocks = message_blocks(notice, status, detail)
        targets = []
        if handle.get("channel") and handle.get("ts"):
            targets.append((str(handle["channel"]), str(handle["ts"])))
        if status in CLOSED_STATUSES:
            # Direct messages keep their personal link while open; once closed, no buttons.
            for message in handle.get("direct", ()):
                if isinstance(message, Mapping) and message.get("channel") and message.get("ts"):
                    targets.append((str(message["channel"]), str(message["ts"])))
        failures = []
        for channel, ts in targets:
            try:
                self._update(channel, ts, text, blocks)
            except NotificationFailed as e:
                failures.append(e)
        if status in DECIDED_STATUSES:
            # An edited message notifies nobody: each approver messaged directly gets a new
            # one saying what happened and who decided.
            said = fallback_text(notice, status)
            for message in handle.get("direct", ()):
                if isinstance(message, Mapping) and message.get("channel"):
                    try:
                        self._post(
                            "chat.postMessage",
                            str(message["channel"]),
                            said,
                            [status_block(status, detail)],
                        )
                    except NotificationFailed as e:
                        failures.append(e)
        if failures:
            raise failures[0]

    def alert(self, text: str, evidence: Sequence[str] = ()) -> None:
        blocks: list[dict[str, Any]] = [{"type": "section", "text": plain(f"ALERT: {text}")}]
        if evidence:
            blocks.append({"type": "section", "text": plain(_bullets(list(evidence), ""))})
        fallback = clip(escape(f"ALERT: {text}"), 300)
        if self.client is None:
            self._send_webhook("webhook alert", fallback, blocks)
            return
        channel = self.settings.slack.default_channel
        if not channel:
            raise NotificationFailed("slack alert failed: slack.default_channel is not set")
        self._post("chat.postMessage", channel, fallback, blocks)

    # -- plumbing ---------------------------------------------------------------------

    def _post(
        self, what: str, channel: str, text: str, blocks: list[dict[str, Any]]
    ) -> dict[str, str]:
        client = self.client
        assert client is not None
        response = self._call(
            what,
            lambda: client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        return {"channel": str(response.get("channel", channel)), "ts": str(response.get("ts"))}

    def _update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        client = self.client
        assert client is not None
        self._call(
            "chat.update",
            lambda: client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
        )

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as e:  # noqa: BLE001 - every failure becomes one safe reason
            raise slack_failure(what, e) from None  # no chain: it may hold the request's token

    def _send_webhook(self, what: str, text: str, blocks: list[dict[str, Any]]) -> None:
        webhook = self.webhook
        assert webhook is not None
        response = self._call(
            what,
            lambda: webhook.send(text=text, blocks=blocks, unfurl_links=False, unfurl_media=False),
        )
        if response.status_code != 200:
            raise NotificationFailed(f"slack {what} failed: HTTP {response.status_code}")
