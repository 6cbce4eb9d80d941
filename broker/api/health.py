"""Liveness and readiness."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, jsonify

from broker.api.common import bearer_token, services
from broker.errors import Unauthenticated

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    """The process is alive. 200 always."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to serve: scopes loaded, store and upstreams reachable.

    200 with every check "ok"; 503 with the failing checks named otherwise. Either way
    ``invalid_scopes`` lists the scopes whose file is broken on disk, with where (the file
    by its name: this endpoint is open): they are not served (409 scope_invalid) while the
    others are.
    """
    svc = services()
    checks = svc.readiness()
    ready = all(value == "ok" for value in checks.values())
    invalid = {
        service: [p.in_file() for p in problems[:10]]
        for service, problems in svc.scopes.current.invalid.items()
    }
    body = jsonify(status="ready" if ready else "not ready", checks=checks, invalid_scopes=invalid)
    return body, 200 if ready else 503


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics in the text exposition format. 200; 401 without the bearer token
    when BROKER_METRICS_TOKEN is set (agents share the port and need not read them).

    Pending approvals are counted in the shared store now, so every replica agrees.
    """
    svc = services()
    expected = svc.settings.metrics_token
    if expected is not None and not hmac.compare_digest(bearer_token().encode(), expected.encode()):
        raise Unauthenticated("wrong metrics token")
    body = svc.metrics.render(pending=lambda: svc.store.count_requests("pending"))
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")
