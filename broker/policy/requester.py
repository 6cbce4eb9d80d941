"""Is this approver the requesting agent? A pure decision over identities.

The requester never approves its own request. An approver *is* the requester when one of
their configured identities (name, email, OIDC subject) is one of the agent's, emails
compared without case, as sign-in does; or when the identity they **signed in** with (an
OpenID provider's issuer address and subject, verified at sign-in) is the agent's own: an
agent whose tokens come from the same provider, for the same subject, as its human's
sign-in. Such an agent is its human, whatever email the configuration matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.config import Approver
from broker.identity.model import parse_principal
from broker.identity.settings import OidcIssuer
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class SignInIdentity:
    """Who an OpenID provider said an approver is at sign-in: its issuer and subject."""

    issuer: str
    subject: str


def agent_names_of(
    signed_in: SignInIdentity | None, issuers: Iterable[OidcIssuer]
) -> frozenset[tuple[str, str]]:
    """The agent identities (issuer name, subject) that ``signed_in`` is: one per configured
    agent issuer at the same provider address (a trailing '/' does not tell them apart)."""
    if signed_in is None:
        return frozenset()
    address = signed_in.issuer.rstrip("/")
    return frozenset(
        (issuer.name, signed_in.subject)
        for issuer in issuers
        if issuer.issuer.rstrip("/") == address
    )


def is_requester(
    approver: Approver, record: RequestRecord, as_agents: frozenset[tuple[str, str]] = frozenset()
) -> bool:
    """True when the approver's identities include the requesting agent's (its subject, or
    an email among its identity claims; emails compared without case, as sign-in does), or
    their sign-in is the agent's own (``as_agents``, from :func:`agent_names_of`)."""
    claims = record.agent_claims
    agent_ids = {record.agent_subject, claims.get("sub", ""), claims.get("email", "")}
    approver_ids = {
        approver.name,
        f"agent:{approver.name}",
        approver.oidc_subject or "",
        approver.email or "",
    }
    if _identities(agent_ids) & _identities(approver_ids):
        return True
    return any((record.agent_issuer, s) in as_agents for s in _agent_subjects(record))


def _agent_subjects(record: RequestRecord) -> set[str]:
    """The agent's subject at its issuer, and its 'sub' claim when kept (an issuer may name
    agents by another claim): either matching a sign-in's subject is the same person."""
    try:
        _, subject = parse_principal(record.agent_subject)
    except ValueError:
        subject = ""
    return {subject, record.agent_claims.get("sub", "")} - {""}


def _identities(values: set[str]) -> set[str]:
    return {v.casefold() if "@" in v else v for v in values} - {""}
