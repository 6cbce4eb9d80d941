"""The one place errors become HTTP responses: ``{error, message, request_id, ...}``.

Views never build error responses. A BrokerError carries its status and code; Werkzeug's
HTTP errors keep their status; anything else is a 500 whose details stay in the server log.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from broker.errors import BrokerError, RateLimited

log = logging.getLogger("broker.api")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _rule() -> str:
    """The URL rule, never the raw path: approval links carry their token in the path."""
    return request.url_rule.rule if request.url_rule else "unmatched"


def error_response(status: int, code: str, message: str, **extra: object) -> Response:
    body = {
        "error": code,
        "message": message,
        "request_id": getattr(g, "request_id", None),
        **extra,
    }
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(BrokerError)
    def broker_error(error: BrokerError) -> Response:
        response = error_response(error.status, error.code, error.message, **error.body())
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after)
        if error.status >= 500:
            log.warning(
                "request failed: %s",
                error.message,
                extra={"error": error.code, "path": _rule()},
            )
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = {
            404: "no such endpoint",
            405: f"method {request.method} is not allowed here",
            413: "request body is too large",
        }.get(status, error.description or "request failed")
        response = error_response(status, HTTP_CODES.get(status, "error"), message)
        for name, value in error.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value  # e.g. Allow, which a 405 must carry
        return response

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        log.error("unexpected error", exc_info=error, extra={"path": _rule()})
        return error_response(500, "internal_error", "the broker could not complete this request")
