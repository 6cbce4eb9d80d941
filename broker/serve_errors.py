"""The errors gunicorn answers itself, before Flask sees the request, in the broker's shape.

A header larger than gunicorn's limit, a request line too long or a malformed request is
refused by gunicorn's parser, which writes an HTML page: a client of the JSON API would
meet the one body it cannot parse. This worker answers those with the body every other
error has, ``{error, message, request_id}`` (``application/json``, ``X-Request-ID``), and
never echoes what the client sent (gunicorn's page quotes it).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http
from gunicorn.workers.gthread import ThreadWorker

# gunicorn's refusal -> (status, reason phrase, the broker's code, a sentence)
REFUSALS: tuple[tuple[type[Exception], int, str, str, str], ...] = (
    (
        http.LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "header_too_large",
        "a request header, or all of them, are larger than the broker accepts",
    ),
    (http.LimitRequestLine, 414, "URI Too Long", "uri_too_long", "the request line is too long"),
    (
        http.UnsupportedTransferCoding,
        501,
        "Not Implemented",
        "bad_request",
        "the transfer coding is not supported",
    ),
    (
        http.ParseException,
        400,
        "Bad Request",
        "bad_request",
        "the request is not valid HTTP (request line or headers)",
    ),
)
HEARTBEAT_SECONDS = 1.0
INTERNAL = (500, "Internal Server Error", "internal_error", "the broker failed to answer")


def refusal(error: BaseException) -> tuple[int, str, str, str]:
    """How the broker answers one of gunicorn's errors: status, reason, code, message."""
    if isinstance(error, http.InvalidResponseHeader | http.InvalidResponseHeaderName):
        return INTERNAL  # the application's fault, not the client's
    for kind, status, reason, code, message in REFUSALS:
        if isinstance(error, kind):
            return status, reason, code, message
    return INTERNAL


def json_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP response carrying the broker's error body; the connection closes."""
    request_id = secrets.token_hex(8)
    body = json.dumps({"error": code, "message": message, "request_id": request_id}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("latin-1") + body


class JsonErrorWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, answering its own errors as the broker's JSON, and telling
    the arbiter it is alive once a second rather than on every wake-up of its loop (a
    system call or two per request; the arbiter waits 60 s before it gives up on one)."""

    _notified_at = 0.0

    def notify(self) -> None:
        now = time.monotonic()
        if now - self._notified_at >= HEARTBEAT_SECONDS:
            self._notified_at = now
            super().notify()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        status, reason, code, message = refusal(exc)
        peer = (addr or ("", -1))[0]
        if status == INTERNAL[0]:
            self.log.exception("error handling a request from ip=%s", peer)
        else:
            self.log.warning("refused a request from ip=%s: %s", peer, code)
        try:
            util.write_nonblock(client, json_error(status, reason, code, message))
        except Exception:  # noqa: BLE001 - the client may be gone already
            self.log.debug("failed to send an error response")
