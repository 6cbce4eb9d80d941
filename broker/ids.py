"""Identifiers the broker hands out: sortable by time, unguessable."""

from __future__ import annotations

import base64
import re
import secrets
import time

REQUEST_PREFIX = "req_"


def new_request_id(now: float | None = None) -> str:
    """'req_' + 6 bytes of milliseconds + 10 random bytes, base32 (32 characters)."""
    millis = int((now if now is not None else time.time()) * 1000)
    raw = millis.to_bytes(6, "big") + secrets.token_bytes(10)
    return REQUEST_PREFIX + base64.b32encode(raw).decode().lower().rstrip("=")


_REQUEST_ID = re.compile(r"req_[a-z2-7]{26}")


def looks_like_request_id(value: str) -> bool:
    """The shape of an id new_request_id makes (ASCII base32), before any lookup."""
    return _REQUEST_ID.fullmatch(value) is not None
