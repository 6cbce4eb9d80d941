"""Errors of the broker client: one root, a stable ``code`` and the HTTP ``status``.

Callers branch on the type (or ``code``), never on the text. Messages never carry a
secret: they are the broker's (which never quotes one) or the client's own.
"""

from __future__ import annotations

__all__ = [
    "ApprovalPending",
    "BrokerClientError",
    "BrokerUnreachable",
    "Denied",
    "Expired",
    "Frozen",
    "NotReady",
    "Revoked",
]


class BrokerClientError(Exception):
    """Root of every error the client raises.

    ``code`` is the broker's machine-readable error code (``bad_request``, ``not_found``,
    ``unauthenticated``, ``rate_limited``, ``upstream_unavailable``...) or one of the
    client's own (``unreachable``, ``bad_response``, ``invalid_argument``, ``denied``,
    ``expired``, ``pending``). ``status`` is the HTTP status, when there was a response.
    """

    default_code = "error"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status: int | None = None,
        *,
        request_id: str | None = None,
        field: str | None = None,
        retry_after: int | None = None,
        http_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.request_id = request_id  # the escalation request (req_...), when one is known
        self.field = field  # the request field the broker blamed
        self.retry_after = retry_after  # seconds, for rate limits
        self.http_request_id = http_request_id  # the broker's X-Request-ID, for its logs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, {self.message!r})"


class BrokerUnreachable(BrokerClientError):
    """No answer from the broker (connection refused, DNS, TLS, timeout, a proxy's 502)."""

    default_code = "unreachable"


class Denied(BrokerClientError):
    """The broker or an approver said no: not a requester, out of scope, change freeze,
    blast radius, an approver's deny, or an open request cancelled by an operator."""

    default_code = "forbidden"


class Frozen(BrokerClientError):
    """The kill switch or the circuit breaker froze this agent or scope: nothing is issued
    until an operator runs ``broker unfreeze``."""

    default_code = "frozen"


class Expired(BrokerClientError):
    """The request expired before it was decided or collected, or was already collected."""

    default_code = "expired"


class NotReady(BrokerClientError):
    """Collecting too early: approvals are missing or the mandatory delay is running."""

    default_code = "not_ready"


class ApprovalPending(BrokerClientError):
    """Waiting timed out while the request was still pending (``request_id`` says which)."""

    default_code = "pending"


class Revoked(BrokerClientError):
    """The credentials were revoked (kill switch) or their agent or scope is frozen: a
    cached copy must not be used."""

    default_code = "revoked"
