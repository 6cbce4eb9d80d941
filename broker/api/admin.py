"""Admin-only API: the kill switch over HTTP. Admins are identities listed in `admins`
(issuer and subject: ``agent:NAME`` or ``ISSUER:SUBJECT``), of an issuer that
``identity.admin_issuers`` allows to hold admin rights."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from broker.api.common import current_agent, json_body, services
from broker.errors import BadRequest, Forbidden
from broker.guard.revocation import RevokeTarget
from broker.identity.model import AgentIdentity

blueprint = Blueprint("admin", __name__, url_prefix="/v1")
FIELDS = {"agent", "service", "environment", "request_id", "all", "reason"}


def _admin() -> AgentIdentity:
    identity = current_agent()
    svc = services()
    if not svc.settings.is_admin(identity):
        svc.audit.record("admin", "denied", identity.principal, reason="not an admin")
        raise Forbidden("this endpoint is for the broker's admins")
    return identity


def _target(body: Any) -> tuple[RevokeTarget, str]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'", unknown[0])
    for name in FIELDS - {"all"}:
        if name in body and not isinstance(body[name], str):
            raise BadRequest(f"{name} must be a string", name)
    if "all" in body and not isinstance(body["all"], bool):
        raise BadRequest("all must be true or false", "all")
    reason = body.get("reason", "")
    target = RevokeTarget(
        agent=body.get("agent"),
        service=body.get("service"),
        environment=body.get("environment"),
        request_id=body.get("request_id"),
        everything=body.get("all", False),
    )
    return target, reason


@blueprint.post("/revoke")
def revoke() -> tuple[Response, int]:
    """The kill switch: revoke, freeze, evict, cancel and alert for one target.

    200 every backend confirmed; 207 some backend could not be reached (see the report);
    400 malformed target or missing reason; 401; 403 not an admin.
    """
    admin = _admin()
    target, reason = _target(json_body())
    report = services().revoke(target, f"admin:{admin.principal}", reason)
    return jsonify(report.as_dict()), 200 if report.ok else 207


@blueprint.post("/unfreeze")
def unfreeze() -> Response:
    """Lift the freeze of an agent, a service or everything. 200; 400; 401; 403.

    ``effective_at``: when the lift takes effect (the AWS revocation cut-off written when
    the freeze began, if that is still ahead: sessions issued before it are denied).
    """
    admin = _admin()
    target, reason = _target(json_body())
    done = services().kill_switch.unfreeze(target, f"admin:{admin.principal}", reason)
    return jsonify(target=target.describe(), lifted=done.lifted, effective_at=done.effective_at)
