"""Helpers every API view uses: the verified agent, the JSON body, the services."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast

from flask import current_app, g, request

from broker.errors import BadRequest, PayloadTooLarge, Unauthenticated, UnsupportedMediaType
from broker.identity.model import AgentIdentity

if TYPE_CHECKING:
    from broker.services import Services

MAX_JSON_DEPTH = 32
# One member of a body may nest deeper: an intent (a Terraform plan nests its modules and
# values; broker.intent.fields bounds it at 100 levels below the body).
DEEP_MEMBER_DEPTH = 101
# The closing quote is optional so a match never fails: a required one made every '"' of
# an unterminated string start a new scan to the end of the body (a 64 KiB body of escaped
# quotes took 20 s of CPU). Unterminated strings are refused by json.loads afterwards.
# Written as runs between escapes ("unrolled"): the same matches as "(?:[^"\\]|\\.)*"?,
# without one alternation per character (twice as fast on a megabyte plan).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?')
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


def services() -> Services:
    return cast("Services", current_app.extensions["broker"])


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token (Authorization: Bearer <jwt>)")
    return token.strip()


def current_agent() -> AgentIdentity:
    """The verified agent of this request (cached on ``g``); 401 otherwise, audited."""
    cached = getattr(g, "agent", None)
    if cached is not None:
        return cast(AgentIdentity, cached)
    svc = services()
    try:
        identity = svc.verifier.verify(bearer_token())
    except Unauthenticated as e:
        svc.audit.record("authenticate", "denied", _peer(), reason=e.message, path=request.path)
        svc.metrics.denial(e.code)
        raise
    g.agent = identity
    return identity


def _peer() -> str:
    return f"unauthenticated ({request.remote_addr or 'unknown'})"


def json_body(max_bytes: int | None = None, deep_member: str | None = None) -> Any:
    """The parsed JSON body: 415 when it is not JSON, 413 over ``max_bytes`` (default: the
    app's limit), 400 when malformed or nested deeper than 32 levels (``deep_member``, a
    top-level member, may nest to 101)."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    limit = max_bytes or current_app.config["MAX_CONTENT_LENGTH"]
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest("request body is not UTF-8") from e
    depth = _depth(text)
    if deep_member is None and depth > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if deep_member is not None and depth > DEEP_MEMBER_DEPTH:
        raise BadRequest(
            f"JSON nested deeper than {DEEP_MEMBER_DEPTH - 1} levels inside {deep_member} "
            f"({MAX_JSON_DEPTH} elsewhere)"
        )
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise BadRequest("request body is not valid JSON") from e
    if depth > MAX_JSON_DEPTH and not _deep_only_in(value, deep_member):
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u" in text:  # only a JSON escape can put these into a UTF-8 body
        _refuse_what_is_not_text(value)
    return value


def _refuse_what_is_not_text(body: Any) -> None:
    """Refuse text no store can hold, naming the top-level field it came in.

    JSON may escape half of a UTF-16 pair (\\ud800), which no UTF-8 store, log or audit
    record can encode, and NUL (\\u0000), which PostgreSQL refuses in text (a 503 "store
    unavailable" for what is bad input).
    """
    fields = body.items() if isinstance(body, dict) else [(None, body)]
    for name, value in fields:
        problem = _not_text(name) if name is not None else None
        problem = problem or _not_text(value)
        if problem:
            field = name if name is not None and not _not_text(name) else None
            raise BadRequest(f"request body holds {problem}, which the broker cannot store", field)


def _not_text(value: Any) -> str | None:
    """What in a parsed JSON value is not storable text, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "an unpaired UTF-16 surrogate (\\ud800-\\udfff)"
    return None


def _deep_only_in(body: Any, member: str | None) -> bool:
    """Whether every part of ``body`` but its ``member`` nests at most 32 levels."""
    if not isinstance(body, dict) or member is None:
        return False
    # (value, the bracket depth a container there would open)
    stack = [(value, 2) for key, value in body.items() if key != member]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            return False
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)
    return True


def _depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text, strings ignored (cheap, no recursion)."""
    depth = deepest = 0
    for char in _NOT_A_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest
