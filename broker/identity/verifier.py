"""Verify the bearer JWT of every API call; one short reason per rejection.

Issuers: the broker itself (tokens it minted, EdDSA with its own key) and the configured
external OIDC issuers (keys from their JWKS). The issuer is chosen by the unverified
``iss`` claim, but only that issuer's keys and algorithms are then accepted, so a token
cannot pick its own algorithm (``alg: none``, HS256 signed with a public key...).
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from cachetools import TTLCache
from jwt.utils import base64url_decode

from broker.config import IdentitySettings, LocalIssuer, OidcIssuer
from broker.errors import Unauthenticated
from broker.identity.jwks import JwksCache
from broker.identity.model import LOCAL_ISSUER, AgentIdentity
from broker.keys import BrokerKeys

LOCAL_ISSUER_NAME = LOCAL_ISSUER
LOCAL_ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
# Verified tokens are remembered briefly (by hash) so repeated calls skip the signature.
VERIFIED_CACHE_SECONDS = 60
KEY_REREAD_SECONDS = 30


def unverified_parts(token: str) -> tuple[Any, Any]:
    """A token's header and claims, read without any check: only to learn the issuer and the
    key, nothing else is trusted from them (PyJWT then decodes and checks the whole token
    with that issuer's rules). Read here rather than by a second full decode in PyJWT,
    whose checks of every character cost as much as the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("malformed token")
    try:
        return json.loads(base64url_decode(parts[0])), json.loads(base64url_decode(parts[1]))
    except (ValueError, TypeError, binascii.Error) as e:
        raise Unauthenticated("malformed token") from e


class TokenVerifier:
    def __init__(
        self,
        settings: IdentitySettings,
        keys: BrokerKeys,
        jwks: JwksCache | None = None,
        clock: Callable[[], float] = time.time,
        reload_keys: Callable[[], BrokerKeys] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        # A token naming a kid we do not know may come from a key rotated on disk since we
        # started (`broker token rotate-key`): read the keys again, at most this often.
        self.reload_keys = reload_keys
        self._keys_read_at = float("-inf")
        self.jwks = jwks or JwksCache(
            ttl_seconds=settings.jwks_cache_seconds,
            min_refresh_seconds=settings.jwks_min_refresh_seconds,
            max_stale_seconds=settings.jwks_max_stale_seconds,
        )
        self.clock = clock
        # The broker's own tokens follow the rules of any issuer; only their keys differ.
        self._local = _local_issuer(settings.local) if settings.local.enabled else None
        local = [self._local] if self._local is not None else []
        self._issuers = {issuer.issuer: issuer for issuer in [*local, *settings.oidc]}
        self._verified: TTLCache[str, AgentIdentity] = TTLCache(
            maxsize=10_000, ttl=VERIFIED_CACHE_SECONDS, timer=clock
        )
        self._lock = threading.Lock()

    def verify(self, token: str) -> AgentIdentity:
        """The identity a bearer token proves; raises Unauthenticated with a short reason."""
        if len(token.encode()) > self.settings.max_token_bytes:
            raise Unauthenticated(f"token is larger than {self.settings.max_token_bytes} bytes")
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            cached = self._verified.get(digest)
        if cached is not None and (cached.expires_at or 0) > self.clock():
            return cached
        identity = self._verify(token)
        with self._lock:
            self._verified[digest] = identity
        return identity

    def _verify(self, token: str) -> AgentIdentity:
        header, unverified = unverified_parts(token)
        if not isinstance(header, dict) or not isinstance(unverified, dict):
            raise Unauthenticated("malformed token")
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise Unauthenticated("unsigned token (alg: none) refused")
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise Unauthenticated("unknown token issuer")
        if algorithm not in issuer.algorithms:
            raise Unauthenticated(f"algorithm {algorithm} is not accepted for this issuer")
        kid = header.get("kid")
        key = self._key_for(issuer, kid if isinstance(kid, str) else None, algorithm)
        claims = self._decode(token, key, issuer, algorithm)
        return self._identity(issuer, claims)

    def _key_for(self, issuer: OidcIssuer, kid: str | None, algorithm: str) -> Any:
        if issuer is self._local:
            now = self.clock()
            key = self.keys.verification_key(kid, now)
            if key is None and self._reread_keys(now):
                key = self.keys.verification_key(kid, now)
            if key is None:
                raise Unauthenticated("unknown signing key (kid)")
            return key
        jwk = self.jwks.key(issuer.jwks_url, kid)
        # A key may only verify the algorithm family it was published for.
        if jwk.algorithm_name and jwk.algorithm_name != algorithm:
            raise Unauthenticated(f"signing key is for {jwk.algorithm_name}, not {algorithm}")
        expected_type = {"R": "RSA", "P": "RSA", "E": "EC"}.get(algorithm[0])
        if algorithm == "EdDSA":
            expected_type = "OKP"
        if jwk.key_type != expected_type:
            raise Unauthenticated(f"signing key type {jwk.key_type} does not match {algorithm}")
        return jwk.key

    def _reread_keys(self, now: float) -> bool:
        """Read the keys again if allowed now (a flood of made-up kids reads them once per
        KEY_REREAD_SECONDS); True when they were read."""
        if self.reload_keys is None:
            return False
        with self._lock:
            if now - self._keys_read_at < KEY_REREAD_SECONDS:
                return False
            self._keys_read_at = now
        self.keys = self.reload_keys()
        return True

    def _decode(self, token: str, key: Any, issuer: OidcIssuer, algorithm: str) -> dict[str, Any]:
        required = REQUIRED_CLAIMS + [c for c in issuer.required_claims if c not in REQUIRED_CLAIMS]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": required, "verify_iat": True},
            )
        except jwt.ExpiredSignatureError as e:
            raise Unauthenticated("token expired") from e
        except jwt.ImmatureSignatureError as e:
            raise Unauthenticated("token not yet valid") from e
        except jwt.InvalidAudienceError as e:
            raise Unauthenticated("token audience is not this broker") from e
        except jwt.InvalidIssuerError as e:
            raise Unauthenticated("wrong token issuer") from e
        except jwt.MissingRequiredClaimError as e:
            raise Unauthenticated(f"token lacks the required claim '{e.claim}'") from e
        except jwt.InvalidSignatureError as e:
            raise Unauthenticated("bad token signature") from e
        except jwt.PyJWTError as e:
            raise Unauthenticated("invalid token") from e
        now = self.clock()
        if _seconds(claims, "iat") > now + self.settings.leeway_seconds:
            raise Unauthenticated("token issued in the future")
        return claims

    def _identity(self, issuer: OidcIssuer, claims: dict[str, Any]) -> AgentIdentity:
        subject = claims.get(issuer.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(f"token lacks the required claim '{issuer.subject_claim}'")
        identity_claims: dict[str, str] = {"iss": issuer.issuer}
        for name in issuer.identity_claims:
            value = claims.get(name)
            if value is None:
                raise Unauthenticated(f"token lacks the required claim '{name}'")
            if not isinstance(value, str | int | bool):
                raise Unauthenticated(f"claim '{name}' must be a string")
            identity_claims[name] = _text(str(value), name)
        return AgentIdentity(
            issuer=issuer.name,
            subject=_text(subject, issuer.subject_claim),
            claims=identity_claims,
            token_id=_text(str(claims["jti"]), "jti") if "jti" in claims else None,
            expires_at=_seconds(claims, "exp"),
        )


def _text(value: str, name: str) -> str:
    """A claim that can be stored and logged: JSON's escapes can carry a lone surrogate
    (\\ud800), which no UTF-8 store, log or audit record can encode, or a NUL, which
    PostgreSQL refuses in text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise Unauthenticated(f"claim '{name}' is not valid text") from e
    if "\x00" in value:
        raise Unauthenticated(f"claim '{name}' is not valid text")
    return value


def _seconds(claims: dict[str, Any], name: str) -> float:
    """A time claim as a finite number: PyJWT accepts any integer, 10**400 included,
    which float() cannot hold (and a signed token must not turn into a 500)."""
    try:
        value = float(claims[name])
    except (TypeError, ValueError, OverflowError) as e:
        raise Unauthenticated(f"token claim '{name}' is not a time") from e
    if not math.isfinite(value):
        raise Unauthenticated(f"token claim '{name}' is not a time")
    return value


def _local_issuer(local: LocalIssuer) -> OidcIssuer:
    """The rules of the broker's own tokens (their keys are the broker's, not a JWKS)."""
    return OidcIssuer(
        name=LOCAL_ISSUER_NAME,
        issuer=local.issuer,
        audience=local.audience,
        jwks_url="",
        algorithms=(LOCAL_ALGORITHM,),
        identity_claims=(),
    )
