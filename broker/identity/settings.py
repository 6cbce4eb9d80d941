"""The identity settings: the broker's own token issuer and the external OIDC issuers.

Declared like every setting (:mod:`broker.schema`) and read as part of ``broker.yaml``
(:mod:`broker.config`), under ``identity:``. Each issuer has a name of its own, which
becomes part of its agents' principals (:mod:`broker.identity.model`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic_core import InitErrorDetails

from broker.identity.fetch import secure_url
from broker.identity.model import LOCAL_ISSUER, RESERVED_ISSUER_NAMES
from broker.schema import (
    Declared,
    Duration,
    Entries,
    Flag,
    HttpUrl,
    Integer,
    Seconds,
    Text,
    alias,
    problem,
)

NAME = "[a-z][a-z0-9_.-]{0,63}"
ALGORITHMS = {
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
}
Name = Text(NAME, "lower-case letters, digits, '.', '_' or '-'")
Algorithm = Text(
    "|".join(sorted(ALGORITHMS)), "asymmetric algorithms only: " + ", ".join(sorted(ALGORITHMS))
)


@dataclass(frozen=True)
class OidcIssuer(Declared):
    """An external identity provider whose JWTs identify agents (CI jobs, workloads)."""

    name: Annotated[str, Name]
    issuer: Annotated[str, Text()]
    audience: Annotated[str, Text()]
    jwks_url: Annotated[str, HttpUrl]
    algorithms: Annotated[tuple[Annotated[str, Algorithm], ...], Entries()] = ("RS256",)
    subject_claim: Annotated[str, Text()] = "sub"
    identity_claims: Annotated[tuple[str, ...], Entries()] = ("sub",)
    required_claims: Annotated[tuple[str, ...], Entries()] = ()

    def problems(self) -> Iterator[InitErrorDetails]:
        if not secure_url(self.jwks_url):
            yield problem(
                "must use https (its keys vouch for agents; http only on this machine)",
                "jwks_url",
            )

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        subject = data.get("subject_claim")
        if "identity_claims" not in data and isinstance(subject, str):
            data["identity_claims"] = [subject]  # identified by its subject unless told
        return iter(())


@dataclass(frozen=True)
class LocalIssuer(Declared):
    """Tokens the broker mints itself (``broker token mint``) for the embedded default."""

    enabled: Annotated[bool, Flag] = True
    issuer: Annotated[str, Text()] = "broker-local"
    audience: Annotated[str, Text()] = "credential-broker"
    max_ttl_seconds: Annotated[int, alias("max_ttl"), Seconds] = 24 * 3600


@dataclass(frozen=True)
class IdentitySettings(Declared):
    local: LocalIssuer = field(default_factory=LocalIssuer)
    oidc: Annotated[tuple[OidcIssuer, ...], Entries(allow_empty=True, unique=False)] = ()
    # The issuers whose identities may be listed in `admins` (the kill switch over HTTP).
    admin_issuers: Annotated[tuple[Annotated[str, Name], ...], Entries(allow_empty=True)] = (
        LOCAL_ISSUER,
    )
    max_token_bytes: Annotated[int, Integer(512, 65536)] = 8192
    leeway_seconds: Annotated[int, alias("leeway"), Seconds] = 30
    jwks_cache_seconds: Annotated[int, alias("jwks_cache"), Seconds] = 600
    jwks_min_refresh_seconds: Annotated[int, alias("jwks_min_refresh"), Seconds] = 30
    # Keys not refreshed for this long (the issuer unreachable) are dropped: fail closed.
    jwks_max_stale_seconds: Annotated[int, alias("jwks_max_stale"), Duration(60, 7 * 86400)] = 3600

    @property
    def issuer_names(self) -> frozenset[str]:
        """Every issuer an identity can come from (the local one when enabled)."""
        local = {LOCAL_ISSUER} if self.local.enabled else set()
        return frozenset(local | {oidc.name for oidc in self.oidc})

    def problems(self) -> Iterator[InitErrorDetails]:
        names: set[str] = set()
        addresses = {self.local.issuer} if self.local.enabled else set()
        for index, oidc in enumerate(self.oidc):
            if oidc.name in RESERVED_ISSUER_NAMES:
                yield problem(
                    f"'{oidc.name}' is reserved (the broker's own agents are local, "
                    "their subjects agent:NAME)",
                    "oidc",
                    index,
                    "name",
                )
            elif oidc.name in names:
                yield problem(f"'{oidc.name}' names two issuers", "oidc", index, "name")
            if oidc.issuer in addresses:
                yield problem(
                    "is another issuer's too: each issuer needs its own 'iss'",
                    "oidc",
                    index,
                    "issuer",
                )
            names.add(oidc.name)
            addresses.add(oidc.issuer)
        if self.jwks_max_stale_seconds < self.jwks_cache_seconds:
            yield problem(
                "must be at least identity.jwks_cache (keys are refreshed that often)",
                "jwks_max_stale",
            )
        known = {LOCAL_ISSUER} | names
        for index, name in enumerate(self.admin_issuers):
            if name not in known:
                yield problem(f"names no configured issuer '{name}'", "admin_issuers", index)
