"""The Flask application factory. Nothing runs at import; everything is built here."""

from __future__ import annotations

import logging
import re
import secrets
import time

from flask import Flask, Response, g, request

from broker.api import (
    admin,
    approval_page,
    credentials,
    health,
    issuances,
    oidc_signin,
    openapi,
    requests,
    slack,
)
from broker.api.errors import register_error_handlers
from broker.api.sessions import BrowserOnlySessions
from broker.config import Settings
from broker.services import Services, build_services

log = logging.getLogger("broker.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.-]{8,64}")


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the broker's WSGI app from settings (or from ready-made services, in tests)."""
    if services is None:
        services = build_services(settings or Settings())
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=services.settings.max_body_bytes,
        SECRET_KEY=services.keys.link_secret,
        JSON_SORT_KEYS=False,
        PREFERRED_URL_SCHEME="https"
        if services.settings.public_url.startswith("https")
        else "http",
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = BrowserOnlySessions()
    # A path with '//' is a 404 like any unknown path, not a redirect built from the Host.
    app.url_map.merge_slashes = False
    app.extensions["broker"] = services
    for blueprint in (
        health.blueprint,
        credentials.blueprint,
        requests.blueprint,
        issuances.blueprint,
        openapi.blueprint,
        approval_page.blueprint,
        oidc_signin.blueprint,
        slack.blueprint,
        admin.blueprint,
    ):
        app.register_blueprint(blueprint)
    for extra in services.blueprints:
        app.register_blueprint(extra)
    register_error_handlers(app)

    @app.before_request
    def _start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        services_ = app.extensions["broker"]
        metrics = services_.metrics
        metrics.labelled(metrics.requests, endpoint, response.status_code).observe(elapsed)
        agent = g.get("agent")
        log.info(
            "%s %s %s",
            request.method,
            endpoint,
            response.status_code,
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": endpoint,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 2),
                "agent": agent.principal if agent else None,
            },
        )
        return response

    return app
