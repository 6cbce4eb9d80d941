"""Escalated requests: the agent polls, then collects its approved credentials once."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from broker.api.common import current_agent, services
from broker.api.credentials import iso, issued_body
from broker.api.long_polls import waiting_slot
from broker.approvals.pending import RequestView
from broker.approvals.service import MAX_WAIT_SECONDS
from broker.errors import BadRequest
from broker.ids import looks_like_request_id

blueprint = Blueprint("requests", __name__, url_prefix="/v1")


def view_body(view: RequestView) -> dict[str, object]:
    record = view.record
    return {
        "request_id": record.id,
        "status": record.status,
        "service": record.service,
        "environment": record.environment,
        "region": record.region,
        "tier": record.tier,
        "backend": record.backend,
        "resources": list(record.resources),
        "approvals_required": record.approvals_required,
        "approvals_received": view.approvals_received,
        "delay_seconds": record.delay_seconds,
        "collectable_at": iso(record.collectable_at),
        "collect_deadline": iso(record.collect_deadline),
        "expires_at": iso(record.expires_at),
        "reason": record.reason,
        # What the approvers approved, when the request carries an intent (docs/intents.md).
        "intent_sha256": record.intent_sha256,
    }


def _request_id(value: str) -> str:
    if not looks_like_request_id(value):
        raise BadRequest("malformed request id", "request_id")
    return value


@blueprint.get("/requests/<request_id>")
def get_request(request_id: str) -> Response:
    """The state of one of the agent's own requests.

    ``?wait=N`` long-polls up to N seconds (at most 30) for a change, when one of the
    worker's long-poll slots is free (half its threads), else answers at once. 200; 400
    malformed id or wait; 401; 404 no such request of this agent.
    """
    agent = current_agent()
    wait_text = request.args.get("wait", "0")
    try:
        wait = float(wait_text)
    except ValueError as e:
        raise BadRequest("wait must be a number of seconds", "wait") from e
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise BadRequest(f"wait must be between 0 and {MAX_WAIT_SECONDS}", "wait")
    svc = services()
    with waiting_slot(wait, svc.settings.threads) as allowed:
        view = svc.approvals.status(_request_id(request_id), agent, allowed)
    return jsonify(view_body(view))


@blueprint.post("/requests/<request_id>/credentials")
def collect(request_id: str) -> Response:
    """Collect the credentials of an approved request, once, by the requesting agent.

    200 credentials; 401; 403 denied, frozen or change freeze; 404 no such request of this
    agent (another agent's reads the same); 409 not approved yet or the delay is running;
    410 already collected or expired; 503 upstream.
    """
    agent = current_agent()
    issued = services().approvals.collect(_request_id(request_id), agent)
    return jsonify(issued_body(issued))


@blueprint.delete("/requests/<request_id>")
def withdraw(request_id: str) -> Response:
    """Withdraw one of the agent's own open requests (its host gave up waiting).

    The request is cancelled and its approvers' message updated; a decided or collected
    request is left as it is. 200 the request as it now stands; 400; 401; 404 no such
    request of this agent.
    """
    agent = current_agent()
    approvals = services().approvals
    view = approvals.status(_request_id(request_id), agent, operation="withdraw")
    approvals.cancel_open("withdrawn by the agent", agent.principal, request_id=view.record.id)
    return jsonify(view_body(approvals.status(view.record.id, agent)))
