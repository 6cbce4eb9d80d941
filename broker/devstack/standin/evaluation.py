"""AWS's documented policy evaluation logic, for the policy types the broker uses (pure).

For one request:
1. An explicit Deny in any policy that applies (the identity's own policies, the session
   policy, the role's trust policy) denies.
2. Identity path: the identity's policies must allow, and when the caller is a session with
   a session policy, that policy must allow too (the session gets the intersection).
3. A role's trust policy (AssumeRole) must allow the caller, even within one account. When
   it names the caller itself (user, role or session) in the same account, that is enough;
   when it names only the caller's account, or the caller is in another account, the
   identity path must allow as well.
4. Anything else is an implicit deny.

Not modelled (the broker relies on none of them): permissions boundaries, service and
resource control policies, resource-based policies other than trust policies, VPC
endpoint policies. See docs/local-stack.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from broker.devstack.standin.statements import Request, statement_applies, statements_of

Result = Literal["Allowed", "ExplicitlyDenied", "ImplicitlyDenied"]


@dataclass(frozen=True)
class Policy:
    """A policy document and where it came from (for the decision's reason)."""

    kind: Literal["identity", "session", "trust"]
    name: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    result: Result
    reason: str  # AWS's wording after the action: "because no session policy allows ..."
    decided_by: str = ""  # policy name and statement Sid (or index) that decided

    @property
    def allowed(self) -> bool:
        return self.result == "Allowed"


_KIND_WORDS = {"identity": "an identity-based", "session": "a session", "trust": "a resource-based"}


@dataclass(frozen=True)
class _Hits:
    allows: list[tuple[Policy, str, str | None]]  # (policy, statement id, principal kind)
    denies: list[tuple[Policy, str]]


def _scan(policies: Sequence[Policy], request: Request) -> _Hits:
    allows: list[tuple[Policy, str, str | None]] = []
    denies: list[tuple[Policy, str]] = []
    for policy in policies:
        version = str(policy.document.get("Version", "2008-10-17"))
        for index, statement in enumerate(statements_of(policy.document)):
            found = statement_applies(statement, request, version, policy.kind == "trust")
            if not found.applies:
                continue
            sid = str(statement.get("Sid") or f"statement {index + 1}")
            if statement.get("Effect") == "Deny":
                denies.append((policy, sid))
            elif statement.get("Effect") == "Allow":
                allows.append((policy, sid, found.principal))
    return _Hits(allows, denies)


def evaluate(
    request: Request,
    identity: Sequence[Policy],
    session: Sequence[Policy] = (),
    trust: Policy | None = None,
    trust_account: str | None = None,
) -> Decision:
    """Allowed, ExplicitlyDenied or ImplicitlyDenied, with AWS's kind of reason."""
    every = [*identity, *session, *([trust] if trust else [])]
    hits = _scan(every, request)
    if hits.denies:
        policy, sid = hits.denies[0]
        return Decision(
            "ExplicitlyDenied",
            f"with an explicit deny in {_KIND_WORDS[policy.kind]} policy",
            f"{policy.name}: {sid}",
        )
    identity_allow = [(p, s) for p, s, _ in hits.allows if p.kind == "identity"]
    session_allow = [(p, s) for p, s, _ in hits.allows if p.kind == "session"]
    trust_allow = [(p, s, k) for p, s, k in hits.allows if p.kind == "trust"]
    action = request.action

    identity_path: Decision
    if not identity_allow:
        identity_path = Decision(
            "ImplicitlyDenied", f"because no identity-based policy allows the {action} action"
        )
    elif session and not session_allow:
        identity_path = Decision(
            "ImplicitlyDenied", f"because no session policy allows the {action} action"
        )
    else:
        policy, sid = identity_allow[0]
        identity_path = Decision("Allowed", "", f"{policy.name}: {sid}")

    if trust is None:
        return identity_path
    if not trust_allow:
        return Decision(
            "ImplicitlyDenied", f"because no resource-based policy allows the {action} action"
        )
    same_account = trust_account == request.principal.account
    direct = [(p, s) for p, s, k in trust_allow if k == "direct"]
    if same_account and direct:
        policy, sid = direct[0]
        named_session = any(request.principal.arn in _named(p.document) for p, _ in direct)
        if session and not session_allow and not named_session:
            # A role (not its session) named by the trust policy: the session policy
            # still bounds what the session may do.
            return Decision(
                "ImplicitlyDenied", f"because no session policy allows the {action} action"
            )
        return Decision("Allowed", "", f"{policy.name}: {sid}")
    return identity_path


def _named(document: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for statement in statements_of(document):
        principal = statement.get("Principal")
        if isinstance(principal, Mapping):
            value = principal.get("AWS")
            names.update(str(v) for v in (value if isinstance(value, list) else [value]))
    return names
