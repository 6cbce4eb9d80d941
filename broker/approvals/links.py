"""Personal approval links: a signed, expiring, single-use token naming approver and request.

The token is a JWT (HS256) signed with the broker's link secret. Its ``jti`` is recorded
in the store when the approver acts, so a link decides once, on any replica. Opening the
link (GET) does not consume it: mail and chat scanners open links.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

import jwt

from broker.errors import Unauthenticated

AUDIENCE = "broker-approval"
TOKEN_TYPE = "approval-link"
MAX_TOKEN_BYTES = 2048
PAGE_PATH = "/approve/"
# A token issued this far in the future was not minted by a broker with a sane clock.
MAX_CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class LinkClaims:
    jti: str
    request_id: str
    approver: str
    expires_at: float


class LinkSigner:
    def __init__(self, secret: bytes, issuer: str, ttl_seconds: int) -> None:
        # A key derived for this purpose only: the same secret also signs session cookies.
        self._key = hmac.new(secret, b"approval-links", hashlib.sha256).digest()
        self.issuer = issuer
        self.ttl = ttl_seconds

    def url(self, token: str) -> str:
        """The approval page address a personal link points at."""
        return f"{self.issuer}{PAGE_PATH}{token}"

    def mint(
        self,
        request_id: str,
        approver: str,
        now: float | None = None,
        ttl_seconds: int | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "typ": TOKEN_TYPE,
            "jti": secrets.token_urlsafe(16),
            "req": request_id,
            "apr": approver,
            "iat": issued,
            "exp": issued + (ttl_seconds or self.ttl),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def parse(self, token: str, now: float | None = None) -> LinkClaims:
        """Verify a link token; raise Unauthenticated with a short reason otherwise.

        Expiry is judged by ``now`` (the broker's clock) rather than PyJWT's own reading
        of the system time, so every replica and every test agree on when a link dies.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("approval link is malformed")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iat", "jti", "aud", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as e:
            raise Unauthenticated("approval link is invalid") from e
        if claims.get("typ") != TOKEN_TYPE or not all(
            isinstance(claims.get(k), str) for k in ("req", "apr", "jti")
        ):
            raise Unauthenticated("approval link is invalid")
        expires, issued = _number(claims.get("exp")), _number(claims.get("iat"))
        current = now if now is not None else time.time()
        if current >= expires:
            raise Unauthenticated("approval link has expired")
        if issued > current + MAX_CLOCK_SKEW_SECONDS:
            raise Unauthenticated("approval link is invalid")
        return LinkClaims(
            jti=claims["jti"],
            request_id=claims["req"],
            approver=claims["apr"],
            expires_at=expires,
        )


def _number(value: object) -> float:
    """A finite time: NaN would never compare as expired, and 10**400 overflows float()."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated("approval link is invalid")
    try:
        number = float(value)
    except OverflowError as e:
        raise Unauthenticated("approval link is invalid") from e
    if not math.isfinite(number):
        raise Unauthenticated("approval link is invalid")
    return number
