"""Fetching what identity providers publish (key sets, discovery documents) safely.

Their addresses vouch for identities, so they must be https (plain http only on this
machine, for tests and the dev stack), a redirect is followed only within the same
origin (a provider's answer cannot send the broker to fetch keys from another host), and
a body is read within a size limit and a total deadline (a provider that trickles bytes
cannot hold a thread longer than the deadline).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHUNK_BYTES = 16 * 1024


def secure_url(url: str) -> bool:
    """https, or http to this machine (tests, the dev stack)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class CrossOriginRedirect(requests.exceptions.InvalidURL):
    """A provider redirected the broker to another scheme, host or port."""


class SameOriginRedirects(requests.Session):
    """A session that follows a redirect only to the origin the request went to."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None and origin(urljoin(resp.url, target)) != origin(resp.url):
            raise CrossOriginRedirect("refused a redirect to another host")
        return target


class BodyTooSlowOrLarge(requests.exceptions.RequestException):
    """A body larger than allowed, or not received within the deadline."""


def read_body(response: requests.Response, limit: int, deadline: float) -> bytes:
    """At most ``limit`` bytes of a streamed body, received before ``deadline`` (monotonic)."""
    body = bytearray()
    try:
        while True:
            # read1: one receive at a time, so the deadline is checked between receives
            # (read(n) would wait for n bytes however slowly they come).
            chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            if not chunk:
                break
            body += chunk
            if len(body) > limit:
                raise BodyTooSlowOrLarge(f"larger than {limit} bytes")
            if time.monotonic() > deadline:
                raise BodyTooSlowOrLarge("not received in time")
    except (OSError, ValueError, urllib3.exceptions.HTTPError) as e:  # a broken or slow read
        raise BodyTooSlowOrLarge(type(e).__name__) from e
    finally:
        response.close()
    return bytes(body)


def get_json_bytes(
    session: requests.Session, url: str, limit: int, timeout: float, **kwargs: Any
) -> tuple[int, bytes]:
    """(status, body) of a GET bounded in size and in total time (``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    response = session.get(url, timeout=timeout, stream=True, **kwargs)
    return response.status_code, read_body(response, limit, deadline)
