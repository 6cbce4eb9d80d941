"""The issuer seam: what every credential backend (STS, Vault token, database) implements.

An issuer receives a fully decided :class:`IssueRequest` (scope resolved, duration clamped,
its :class:`~broker.policy.grant.Grant` compiled) and returns one :class:`IssuedCredential`,
or raises :class:`UpstreamUnavailable`. It issues exactly the grant's documents, never wider,
never longer, and never returns a partial credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from broker.identity.model import AgentIdentity
from broker.policy.grant import Grant
from broker.scopes.model import Backend, Environment, Scope, TierName
from broker.store.records import IssuedRecord


@dataclass(frozen=True)
class IssueRequest:
    request_id: str
    identity: AgentIdentity
    scope: Scope
    environment: Environment
    region: str | None
    tier: TierName
    backend: Backend
    resources: tuple[str, ...]
    grant: Grant  # exactly what is issued (its duration included)

    @property
    def duration_seconds(self) -> int:
        return self.grant.duration_seconds

    @property
    def session_policy(self) -> Mapping[str, Any] | None:
        return self.grant.session_policy


@dataclass(frozen=True)
class IssuedCredential:
    """Credential material plus the non-secret ids that correlate it (audit, revocation).

    ``secret`` holds the values that must never be logged; ``repr`` hides them.
    """

    backend: str
    expires_at: float
    secret: Mapping[str, str]
    public: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        hidden = ", ".join(f"{k}=***" for k in sorted(self.secret))
        return (
            f"IssuedCredential(backend={self.backend!r}, expires_at={self.expires_at}, "
            f"public={dict(self.public)!r}, {hidden})"
        )

    __str__ = __repr__

    def body(self) -> dict[str, str]:
        """The credential as returned to the agent: public ids and secret values together."""
        return {**self.public, **self.secret}

    def secret_values(self) -> list[str]:
        return [v for v in self.secret.values() if v]


class Issuer(Protocol):
    """One credential backend."""

    backend: str

    def issue(self, request: IssueRequest) -> IssuedCredential:
        """Issue exactly what ``request`` says; raise UpstreamUnavailable on failure."""
        ...

    def revoke(self, record: IssuedRecord) -> None:
        """Invalidate what ``record`` describes; raise UpstreamUnavailable on failure."""
        ...

    def check(self) -> None:
        """Raise UpstreamUnavailable when the upstream cannot be reached (for /readyz)."""
        ...
