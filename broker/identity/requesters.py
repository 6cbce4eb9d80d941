"""May this agent request this scope? A pure decision over the scope's ``requesters``."""

from __future__ import annotations

from fnmatch import fnmatchcase

from broker.identity.model import AgentIdentity
from broker.scopes.model import Requester, Scope


def requester_matches(requester: Requester, identity: AgentIdentity) -> bool:
    """Exact subject, or every listed claim matching its glob (the subject counts as 'sub')."""
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
