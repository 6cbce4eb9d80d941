"""What a tool call comes to, as structured content a host and a model can both read.

Every result carries ``status``; every refusal also a machine-readable ``code``
(``pending``, ``denied``, ``frozen``, ``out_of_scope``, ``intent_outside_scope``,
``rate_limited``, ``invalid_argument``...) and a ``message``, one sentence for people.
Nothing here ever holds a secret: credentials are written to files first, and only their
public ids and where they went are described.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types

from broker_client.errors import (
    ApprovalPending,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
)

Outcome = dict[str, Any]
#: Statuses that are not failures: the host shows them as results, not errors.
SUCCESS_STATUSES = frozenset({"ok", "issued", "pending", "approved", "collected"})
# Broker error codes that mean "this agent may not have that": the model should not retry.
_OUT_OF_SCOPE = frozenset({"forbidden", "not_a_requester"})
_SCOPE_FIELDS = frozenset({"service", "environment", "resources", "tier", "backend", "region"})


def _out_of_scope(error: BrokerClientError) -> bool:
    """What the agent may not have: a refusal, a scope part that does not exist (404), or
    a resource the tier does not grant (the broker's circuit breaker counts the same). A
    400 naming another field (a region missing, a name in capitals) is an argument the
    model can correct, not a reason to stop."""
    if error.code in _OUT_OF_SCOPE:
        return True
    if error.code == "not_found":
        return error.field in _SCOPE_FIELDS
    return error.code == "bad_request" and error.field == "resources"


def refusal(code: str, message: str, status: str | None = None, **details: Any) -> Outcome:
    """A refusal: ``status`` (defaults to the code's family), ``code`` and ``message``."""
    family = status or _family(code)
    extra = {k: v for k, v in details.items() if v is not None}
    return {"status": family, "code": code, "message": message, **extra}


def from_error(error: Exception) -> Outcome:
    """The refusal an exception means (a broker answer, a bad destination, a write error)."""
    if isinstance(error, BrokerClientError):
        details: dict[str, Any] = {
            "request_id": error.request_id,
            "field": error.field,
            "retry_after": error.retry_after,
        }
        return refusal(_code(error), error.message, **details)
    if isinstance(error, OSError):
        reason = error.strerror or type(error).__name__
        return refusal("write_failed", f"cannot write the credentials: {reason}", "error")
    return refusal("invalid_argument", str(error), "error")


def call_result(outcome: Outcome) -> types.CallToolResult:
    """The ``CallToolResult`` of an outcome: structured content, the message as text, and
    ``isError`` for refusals."""
    text = outcome.get("message") or _summary(outcome)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=str(text))],
        structured_content=outcome,
        is_error=outcome.get("status") not in SUCCESS_STATUSES,
    )


def _code(error: BrokerClientError) -> str:
    if isinstance(error, Frozen):
        return "frozen"
    if isinstance(error, BrokerUnreachable):
        return "unreachable"
    if isinstance(error, ApprovalPending):
        return "pending"
    if isinstance(error, Expired):
        return "collected" if error.code == "collected" else "expired"
    if _out_of_scope(error):
        return "out_of_scope"
    if isinstance(error, Denied):
        return error.code if error.code != "forbidden" else "denied"
    return "invalid_argument" if error.code == "bad_request" else error.code


def _family(code: str) -> str:
    if code in ("pending", "approved", "expired", "frozen", "unreachable"):
        return code
    if code in ("denied", "cancelled", "out_of_scope", "intent_outside_scope"):
        return "denied"
    if code in ("change_freeze", "blast_radius_exceeded", "rate_limited"):
        return "denied"
    return "error"


def _summary(outcome: Outcome) -> str:
    status = outcome.get("status")
    if status == "issued":
        where = outcome.get("written_to", {})
        return (
            f"issued; written to {where.get('profile') or where.get('path')}: {where.get('usage')}"
        )
    return str(status)
