"""Does an issuance still stand? Agent-side caches ask before serving a copy."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from broker.api.common import current_agent, services
from broker.api.credentials import iso
from broker.approvals.lookups import record_refused_lookup
from broker.errors import BadRequest, NotFound
from broker.ids import looks_like_request_id
from broker.issuances import standing

blueprint = Blueprint("issuances", __name__, url_prefix="/v1")


@blueprint.get("/issuances/<request_id>")
def get_issuance(request_id: str) -> Response:
    """Whether the credentials issued under one of the agent's requests still stand.

    ``status`` is ``active``, ``revoked`` (the kill switch revoked them), ``frozen`` (the
    agent or scope is frozen: nothing may be used) or ``expired``; read from the shared
    store, so every replica answers the same. 200; 400 malformed id; 401; 404 no issuance
    of this agent under that id (another agent's reads the same, and is audited).
    """
    agent = current_agent()
    if not looks_like_request_id(request_id):
        raise BadRequest("malformed request id", "request_id")
    svc = services()
    found = svc.store.issued_for_request(request_id)
    records = [r for r in found if r.agent_key == agent.key]
    if not records:
        # Another agent's id reads as an unknown one (broker.approvals.lookups).
        request = svc.store.get_request(request_id)
        if request is None or request.agent_key != agent.key:  # its own: nothing issued yet
            record_refused_lookup(svc.store, svc.audit, agent, request_id, "issuance")
        raise NotFound("no such issuance")
    freeze = svc.guard.frozen(agent.principal, records[0].service, records[0].environment)
    state = standing(request_id, records, freeze, svc.clock())
    return jsonify(
        request_id=state.request_id,
        status=state.status,
        reason=state.reason,
        expires_at=iso(state.expires_at),
    )
