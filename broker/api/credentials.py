"""POST /v1/credentials and GET /v1/scopes: what agents call at session start."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, jsonify, request

from broker.api.common import current_agent, json_body, services
from broker.approvals.pending import Pending
from broker.errors import PayloadTooLarge
from broker.identity.requesters import may_request
from broker.issuance import Issued
from broker.store.records import RequestRecord

blueprint = Blueprint("credentials", __name__, url_prefix="/v1")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return (
        dt.datetime.fromtimestamp(timestamp, dt.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def issued_body(outcome: Issued) -> dict[str, object]:
    return {
        "request_id": outcome.request_id,
        "status": "issued",
        "backend": outcome.credential.backend,
        "credentials": outcome.credential.body(),
        "expires_at": iso(outcome.credential.expires_at),
        "cached": outcome.cached,
        **({"intent": dict(outcome.intent)} if outcome.intent else {}),
    }


def pending_body(
    record: RequestRecord, approvals_received: int, notified: bool | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "request_id": record.id,
        "status": record.status,
        "approvals_required": record.approvals_required,
        "approvals_received": approvals_received,
        "expires_at": iso(record.expires_at),
        # From the configured public URL, never the request's Host header.
        "poll_url": f"{services().settings.public_url}/v1/requests/{record.id}",
        # Where approvers act: the broker's page for this request (personal links and
        # sign-in start there); an agent may show it to its human.
        "approval_url": f"{services().settings.public_url}/requests/{record.id}",
    }
    if notified is not None:
        # Whether a notifier (Slack) told the approvers; false when none is configured or
        # it failed, so an agent does not claim that people were told.
        body["notified"] = notified
    return body


@blueprint.post("/credentials")
def request_credentials() -> tuple[Response, int]:
    """Request credentials for a scope tier, or for exactly what an intent will do.

    200: read credentials issued now (or from the cache). 202: a write/delete request is
    pending approval. 400/404: invalid or unknown field; an intent malformed, unsupported,
    outside the scope, or required and missing. 401: bad token. 403: not a requester of
    the scope, frozen, change freeze, blast radius (max_resources, max_destructive). 413
    (an intent's body may be larger: limits.max_intent_body), 415, 429 (with Retry-After),
    503 upstream unavailable (nothing issued).
    """
    agent = current_agent()
    settings = services().settings
    # Intents (Terraform plans) are larger and deeper than any other body: only a body
    # carrying one may use the larger bounds.
    body = json_body(settings.max_intent_body_bytes, deep_member="intent")
    size = len(request.get_data(cache=True))
    if size > settings.max_body_bytes and not (isinstance(body, dict) and "intent" in body):
        raise PayloadTooLarge(f"request body is larger than {settings.max_body_bytes} bytes")
    outcome = services().credentials.request(agent, body)
    if isinstance(outcome, Pending):
        # The notifier's handle is stored once it has posted; none means nobody was told.
        stored = services().approvals.get(outcome.request.id)
        body = pending_body(outcome.request, 0, bool(stored.notification))
        if outcome.intent:
            body["intent"] = dict(outcome.intent)
        return jsonify(body), 202
    return jsonify(issued_body(outcome)), 200


@blueprint.get("/scopes")
def list_scopes() -> Response:
    """The scopes this agent may request: environments, regions, tiers, backends. 200, 401."""
    agent = current_agent()
    result = []
    for scope in services().scopes.current.scopes.values():
        if not may_request(scope, agent):
            continue
        environments = []
        for env in scope.environments.values():
            backends = [
                name
                for name, present in (
                    ("aws", env.aws),
                    ("vault", env.vault),
                    ("database", env.database),
                )
                if present
            ]
            environments.append(
                {
                    "name": env.name,
                    "regions": list(env.aws.regions) if env.aws else [],
                    "backends": backends,
                }
            )
        tiers = [
            {
                "name": tier.name,
                "ttl_seconds": tier.ttl_seconds,
                "approval_required": tier.approval is not None,
                "approvals": tier.approval.total_required if tier.approval else 0,
                "delay_seconds": tier.approval.delay_seconds if tier.approval else 0,
                "max_resources": tier.max_resources,
            }
            for tier in scope.tiers.values()
        ]
        result.append(
            {
                "service": scope.service,
                "description": scope.description,
                "environments": environments,
                "tiers": tiers,
            }
        )
    return jsonify(agent=agent.principal, scopes=result)
