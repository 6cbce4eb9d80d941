"""Personal approval links: signed, expiring (by the broker's clock), naming one approver."""

from __future__ import annotations

import time

import jwt
import pytest

from broker.approvals.links import AUDIENCE, LinkSigner
from broker.errors import Unauthenticated

SECRET = b"k" * 32
ISSUER = "https://broker.example.com"


def signer(ttl: int = 600) -> LinkSigner:
    return LinkSigner(SECRET, ISSUER, ttl)


def test_a_minted_link_names_its_request_and_approver() -> None:
    now = time.time()
    token = signer().mint("req_x", "alice", now=now)
    claims = signer().parse(token, now=now + 1)
    assert (claims.request_id, claims.approver) == ("req_x", "alice")
    assert claims.expires_at == int(now) + 600
    assert signer().url(token) == f"{ISSUER}/approve/{token}"


def test_each_link_has_its_own_id() -> None:
    first = signer().parse(signer().mint("req_x", "alice"))
    second = signer().parse(signer().mint("req_x", "alice"))
    assert first.jti != second.jti


def test_expiry_follows_the_brokers_clock_not_the_systems() -> None:
    now = time.time()
    token = signer(ttl=600).mint("req_x", "alice", now=now)
    signer().parse(token, now=now + 599)
    with pytest.raises(Unauthenticated, match="expired"):
        signer().parse(token, now=now + 600)
    # Minted "in the past" by the broker's clock: expired although the system clock is
    # within PyJWT's idea of validity... and the other way round.
    old = signer(ttl=600).mint("req_x", "alice", now=now - 3600)
    with pytest.raises(Unauthenticated, match="expired"):
        signer().parse(old, now=now)


def test_a_link_from_the_future_is_refused() -> None:
    now = time.time()
    token = signer().mint("req_x", "alice", now=now + 3600)
    with pytest.raises(Unauthenticated, match="invalid"):
        signer().parse(token, now=now)


@pytest.mark.parametrize(
    "forge",
    [
        # another key
        lambda c: jwt.encode(c, b"x" * 32, algorithm="HS256"),
        # no signature at all
        lambda c: jwt.encode(c, None, algorithm="none"),
        # the broker's key but another purpose (not the derived link key)
        lambda c: jwt.encode(c, SECRET, algorithm="HS256"),
    ],
)
def test_forged_links_are_refused(forge: object) -> None:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": "approval-link",
        "jti": "j",
        "req": "req_x",
        "apr": "alice",
        "iat": now,
        "exp": now + 600,
    }
    token = forge(claims)  # type: ignore[operator]
    with pytest.raises(Unauthenticated, match="invalid"):
        signer().parse(token)


def test_a_tampered_link_is_refused() -> None:
    token = signer().mint("req_x", "alice")
    header, payload, signature = token.split(".")
    other = signer().mint("req_x", "bob").split(".")[1]
    with pytest.raises(Unauthenticated):
        signer().parse(f"{header}.{other}.{signature}")
    with pytest.raises(Unauthenticated):
        signer().parse(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))


def test_another_brokers_link_is_refused() -> None:
    token = LinkSigner(SECRET, "https://other.example.com", 600).mint("req_x", "alice")
    with pytest.raises(Unauthenticated):
        signer().parse(token)


@pytest.mark.parametrize("junk", ["", "x", "a.b.c", "é" * 10, "x" * 5000])
def test_junk_is_refused_cleanly(junk: str) -> None:
    with pytest.raises(Unauthenticated):
        signer().parse(junk)
