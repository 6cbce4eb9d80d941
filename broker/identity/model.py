"""Who is calling: the verified identity of an agent, and the principal that names it.

An identity is its issuer and its subject together: two issuers may both sign a token for
``agent:ops`` (an OIDC provider whose tenants choose their subject, say), and they are
two different agents. Everything that keys on an agent (requesters, admins, freezes, the
circuit breaker, rate limits, audit records) uses the **principal**, one string naming
both: the local issuer's subjects as they are written (``agent:NAME``), any other
issuer's as ``ISSUER:SUBJECT`` (``github:repo:acme/app:ref:refs/heads/main``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

LOCAL_ISSUER = "local"  # the name of the broker's own issuer (tokens it mints)
AGENT_PREFIX = "agent:"  # every subject the local issuer mints starts with it
# Names an external issuer cannot take: they would read as the local issuer's principals.
RESERVED_ISSUER_NAMES = frozenset({LOCAL_ISSUER, AGENT_PREFIX.rstrip(":")})


def principal_of(issuer: str, subject: str) -> str:
    """The one string naming ``subject`` of ``issuer`` (see the module's docstring)."""
    if issuer == LOCAL_ISSUER and subject.startswith(AGENT_PREFIX):
        return subject
    return f"{issuer}:{subject}"


def parse_principal(principal: str) -> tuple[str, str]:
    """(issuer, subject) of a principal; ``agent:NAME`` is the local issuer's.

    Raises ValueError for text naming no issuer (no ':' or an empty part).
    """
    if principal.startswith(AGENT_PREFIX):
        return LOCAL_ISSUER, principal
    issuer, sep, subject = principal.partition(":")
    if not sep or not issuer or not subject:
        raise ValueError(
            f"'{principal[:80]}' names no issuer: write agent:NAME for the broker's own "
            "agents, ISSUER:SUBJECT for another issuer's"
        )
    return issuer, subject


@dataclass(frozen=True)
class AgentIdentity:
    """A verified agent: its issuer, subject and the claims that identify it.

    ``claims`` holds only the identity claims the issuer's configuration names (for example
    ``repository`` and ``ref`` for CI tokens), as strings, so two tokens of the same
    workload map to the same identity.
    """

    issuer: str  # the configured issuer's name ("local", "github"...)
    subject: str
    claims: Mapping[str, str] = field(default_factory=dict)
    token_id: str | None = None
    expires_at: float | None = None

    @property
    def principal(self) -> str:
        """Issuer and subject in one string: what freezes, admins and audit records name."""
        return principal_of(self.issuer, self.subject)

    @cached_property  # asked several times per request; a sha256 each time otherwise
    def key(self) -> str:
        """A stable identifier of this identity and its claims: what owns a request and keys
        the credential cache. Counts per agent (rate limits, the breaker) and freezes key on
        :attr:`principal` instead, so varying the other claims buys nothing."""
        parts = [self.issuer, self.subject, *(f"{k}={v}" for k, v in sorted(self.claims.items()))]
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
        return f"{self.issuer}:{self.subject}:{digest}"

    def describe(self) -> str:
        return f"{self.subject} (issuer {self.issuer})"
