"""May this agent request this scope? A pure decision over the scope's ``requesters``.

An entry matches an identity of one issuer only: the one it names (``issuer``), else the
one its exact ``iss`` claim names, else the broker's own. The same subject from another
issuer is another agent.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from broker.identity.model import LOCAL_ISSUER, AgentIdentity, principal_of
from broker.scopes.model import Requester, Scope


def same_issuer(requester: Requester, identity: AgentIdentity) -> bool:
    """Whether ``identity`` comes from the issuer ``requester`` is about."""
    if requester.issuer is not None:
        return identity.issuer == requester.issuer
    if "iss" in requester.claims:
        # Exact (the loader refuses a pattern), and compared with the verified issuer's
        # configured address below: each configured issuer has its own.
        return True
    return identity.issuer == LOCAL_ISSUER


def requester_matches(requester: Requester, identity: AgentIdentity) -> bool:
    """Same issuer, and the exact subject or every listed claim matching its glob (the
    subject counts as 'sub')."""
    if not same_issuer(requester, identity):
        return False
    if requester.subject is not None:
        return requester.subject == identity.subject
    if not requester.claims:
        return False  # an empty match would admit everyone; the loader refuses it too
    claims = {"sub": identity.subject, **identity.claims}
    return all(
        name in claims and fnmatchcase(claims[name], pattern)
        for name, pattern in requester.claims.items()
    )


def may_request(scope: Scope, identity: AgentIdentity) -> bool:
    return any(requester_matches(r, identity) for r in scope.requesters)


def may_be_requested_by(scope: Scope, principal: str) -> bool:
    """Could the agent ``principal`` (issuer and subject) hold credentials of ``scope``? A
    requester names it, or matches by claims (unknown here: counted as yes, to fail
    closed)."""
    return any(
        r.subject is None or principal_of(r.issuer or LOCAL_ISSUER, r.subject) == principal
        for r in scope.requesters
    )
