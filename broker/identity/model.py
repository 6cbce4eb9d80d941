"""Who is calling: the verified identity of an agent."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property


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

    @cached_property  # asked several times per request; a sha256 each time otherwise
    def key(self) -> str:
        """A stable identifier of this identity, used to key caches and rate limits."""
        parts = [self.issuer, self.subject, *(f"{k}={v}" for k, v in sorted(self.claims.items()))]
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
        return f"{self.issuer}:{self.subject}:{digest}"

    def describe(self) -> str:
        return f"{self.subject} (issuer {self.issuer})"
