"""POST /slack/interactions: the Approve, Deny and Review buttons of the Slack message.

A click is trusted only after Slack's signature over the exact body checks out with the
signing secret, its timestamp is within 5 minutes of the broker's clock, and its
signature has not been seen before (recorded in the store, so a replay is refused on
every replica). The clicking Slack user must map to a configured approver; the approval
service then enforces every rule, including "no approval inside Slack" for tiers that
forbid it (``delete`` by default), where the approver is answered with a personal link
to the approval page instead.

Slack expects a 200 for every interaction it delivers; what the clicker should read is
sent back through the interaction's ``response_url`` as an ephemeral message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from flask import Blueprint, Response, current_app, jsonify, request
from slack_sdk.signature import Clock, SignatureVerifier

from broker.api.common import services
from broker.approvals.service import Decision
from broker.errors import (
    BadRequest,
    BrokerError,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthenticated,
)
from broker.ids import looks_like_request_id
from broker.notify.base import NotificationFailed
from broker.notify.slack import (
    ACTION_APPROVE,
    ACTION_DENY,
    ACTION_OPEN_PAGE,
    ACTION_REVIEW,
    escape,
)
from broker.notify.slack_responder import SlackResponder
from broker.policy.decision import OPEN_STATES
from broker.scopes.model import Approval

log = logging.getLogger(__name__)
blueprint = Blueprint("slack", __name__)

MAX_AGE_SECONDS = 5 * 60
_TIMESTAMP = re.compile(r"\d{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_SLACK_ID = re.compile(r"[A-Z0-9]{2,32}")
REPLAY_KEY_PREFIX = "slack:"
REPLAY_MARK = "slack-interaction"  # the used-token row's request column for these


@dataclass(frozen=True)
class Click:
    """One button click, from a verified payload."""

    user_id: str
    action_id: str
    request_id: str
    response_url: str | None


class _BrokerClock(Clock):
    """slack_sdk's verifier reads the time through this: the broker's clock, not the OS's."""

    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verify(body: bytes, timestamp: str, signature: str, secret: str, now: float) -> None:
    """Raise Unauthenticated unless Slack signed exactly this body within the last 5 min."""
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        raise Unauthenticated("missing or malformed Slack signature headers")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise Unauthenticated("Slack request timestamp is more than 5 minutes off")
    verifier = SignatureVerifier(secret, clock=_BrokerClock(now))
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise Unauthenticated("Slack signature does not match")


def parse_click(body: bytes) -> Click | None:
    """The first button action of a ``block_actions`` payload; None for other interactions."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=10)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, RecursionError) as e:
        raise BadRequest("body must be a Slack interaction payload", "payload") from e
    if not isinstance(payload, dict):
        raise BadRequest("payload must be a JSON object", "payload")
    if payload.get("type") != "block_actions":
        return None
    user = payload.get("user")
    actions = payload.get("actions")
    if not isinstance(user, dict) or not isinstance(actions, list) or not actions:
        raise BadRequest("block_actions payload without user or actions", "payload")
    action = actions[0]
    user_id = user.get("id")
    if not isinstance(action, dict) or not isinstance(user_id, str):
        raise BadRequest("malformed action", "payload")
    if not _SLACK_ID.fullmatch(user_id):
        raise BadRequest("malformed Slack user id", "payload")
    action_id, value = action.get("action_id"), action.get("value")
    if action_id not in (ACTION_APPROVE, ACTION_DENY, ACTION_REVIEW, ACTION_OPEN_PAGE):
        raise BadRequest("unknown action", "payload")
    if not isinstance(value, str) or not looks_like_request_id(value):
        raise BadRequest("the action names no valid request", "payload")
    response_url = payload.get("response_url")
    return Click(
        user_id=user_id,
        action_id=str(action_id),
        request_id=value,
        response_url=response_url if isinstance(response_url, str) else None,
    )


def _raw_body() -> bytes:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return request.get_data(cache=True)


@blueprint.post("/slack/interactions")
def interactions() -> Response:
    """A button click delivered by Slack.

    200 the click was verified and handled (its outcome, including a refusal by the
    approval rules, is sent to the clicker through ``response_url`` and echoed in the
    body); 400 not a Slack interaction payload; 401 bad, stale (over 5 minutes) or replayed
    signature; 404 Slack interactions are not configured; 413 body too large.
    """
    svc = services()
    secret = svc.settings.slack.signing_secret
    if not secret:
        raise NotFound("Slack interactions are not configured on this broker")
    body = _raw_body()
    now = svc.clock()
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    try:
        verify(body, timestamp, signature, secret, now)
    except Unauthenticated as e:
        svc.audit.record("slack", "refused", "slack", reason=e.message)
        raise
    # Only a genuine signature is remembered, for as long as it could be accepted.
    replay_key = REPLAY_KEY_PREFIX + hashlib.sha256(signature.encode()).hexdigest()[:56]
    expires = int(timestamp) + MAX_AGE_SECONDS + 60
    if not svc.store.use_token(replay_key, REPLAY_MARK, expires, now):
        svc.audit.record("slack", "refused", "slack", reason="replayed interaction")
        raise Unauthenticated("this Slack interaction was already received (replay)")
    click = parse_click(body)
    if click is None or click.action_id == ACTION_OPEN_PAGE:
        return jsonify(ok=True, outcome="ignored")  # a URL button: the browser did the work
    return _handle(click)


def _handle(click: Click) -> Response:
    svc = services()
    approver = svc.settings.approver_by_slack_id(click.user_id)
    if approver is None:
        svc.audit.record(
            "slack",
            "refused",
            f"slack:{click.user_id}",
            reason="Slack user is not a configured approver",
            request_id=click.request_id,
        )
        return _answer(click, False, "refused", "You are not a configured approver.")
    try:
        if click.action_id == ACTION_REVIEW:
            return _review(click, approver.name)
        decision: Decision = "approve" if click.action_id == ACTION_APPROVE else "deny"
        reason = "denied in Slack" if decision == "deny" else ""
        view = svc.approvals.decide(click.request_id, approver.name, decision, "slack", reason)
    except StoreUnavailable:
        raise  # 503: Slack shows the click failed; nothing was decided
    except BrokerError as e:
        rule = _rule_if_eligible(click.request_id, approver.name)
        if decision == "approve" and rule is not None and not rule.allow_slack_approval:
            return _answer(
                click, False, "refused", e.message, _personal_link(click.request_id, approver.name)
            )
        return _answer(click, False, "refused", e.message)
    record = view.record
    text = (
        f"Recorded your {'approval' if decision == 'approve' else 'denial'} of "
        f"{record.tier} on {record.service}/{record.environment}: {record.status} "
        f"({view.approvals_received} of {record.approvals_required} approvals)."
    )
    return _answer(click, True, record.status, text)


def _review(click: Click, approver: str) -> Response:
    if _rule_if_eligible(click.request_id, approver) is None:
        return _answer(click, False, "refused", "You are not an approver of this open request.")
    services().audit.record(
        "link", "sent", f"approver:{approver}", request_id=click.request_id, via="slack"
    )
    return _answer(
        click,
        True,
        "link",
        "Here is your approval page.",
        _personal_link(click.request_id, approver),
    )


def _rule_if_eligible(request_id: str, approver: str) -> Approval | None:
    """The approval rule of this open request if ``approver`` may decide it now, else None."""
    svc = services()
    try:
        record = svc.approvals.get(request_id)
        _, rule, eligible = svc.approvals.eligible(record)
    except BrokerError:
        return None
    if approver not in eligible or record.status not in OPEN_STATES:
        return None
    return rule


def _personal_link(request_id: str, approver: str) -> str:
    svc = services()
    return svc.links.url(svc.links.mint(request_id, approver, now=svc.clock()))


def _answer(click: Click, ok: bool, outcome: str, text: str, link: str | None = None) -> Response:
    """Tell the clicker (ephemerally) and acknowledge Slack's delivery with a 200.

    A personal ``link`` goes only to Slack (the clicker alone sees it), never into the
    HTTP body, logs or audit.
    """
    if click.response_url:
        message = escape(text)
        if link is not None:
            message += f" Your personal link (works once): <{escape(link)}|open the approval page>"
        try:
            SlackResponder(services().settings).reply(click.response_url, message)
        except NotificationFailed as e:
            log.warning("could not answer a Slack interaction: %s", e)
    return jsonify(ok=ok, outcome=outcome, message=text)
