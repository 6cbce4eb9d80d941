"""An approver's signed-in session (OIDC sign-in), kept in Flask's signed cookie.

The cookie holds the approver's name, the provider's issuer and subject it verified at
sign-in (an approver who is the requesting agent's own identity there may not approve:
:mod:`broker.policy.requester`), a random session id and when the session started and was
last used. A session ends after ``session_idle`` without a request, after
``session_max`` in any case, and at sign-out, when its id is recorded in the store (like a
used link's) so that a copy of the cookie is refused on every replica too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import g, session

from broker.api import pages
from broker.api.common import services
from broker.config import Approver, OidcSignIn
from broker.policy.requester import SignInIdentity

SESSION_KEY = "oidc"


def oidc_settings() -> OidcSignIn:
    oidc = services().settings.approvals.oidc
    assert oidc is not None, "sign-in routes exist only when approvals.oidc is set"
    return oidc


@dataclass(frozen=True)
class SignedIn:
    approver: Approver
    session_id: str
    signed_in_at: float
    identity: SignInIdentity  # the provider's issuer and the subject it verified


def signed_in_identity(approver: Approver) -> SignInIdentity | None:
    """The verified sign-in of ``approver`` in this browser, if sign-in is configured and
    they are signed in (a link's page checks it too: their sign-in may be the agent's)."""
    if services().settings.approvals.oidc is None:
        return None
    who = signed_in()
    return who.identity if who is not None and who.approver.name == approver.name else None


def _session_jti(session_id: str) -> str:
    return f"oidc-session:{session_id}"


def signed_in() -> SignedIn | None:
    """The approver this browser is signed in as, or None.

    A session past its idle or absolute lifetime, signed out (a copy of the cookie), or of
    an approver no longer configured is cleared, and ``g.sign_in_ended`` says why.
    """
    data = session.get(SESSION_KEY)
    if data is None:
        return None
    live = _check_session(data)
    if isinstance(live, str):
        session.clear()
        g.sign_in_ended = live
        return None
    session[SESSION_KEY] = {**data, "seen": services().clock()}
    return live


def _check_session(data: object) -> SignedIn | str:
    """The session's approver, or why the session has ended."""
    svc = services()
    oidc = oidc_settings()
    now = svc.clock()
    fields = data if isinstance(data, dict) else {}
    name, sid = fields.get("approver"), fields.get("sid")
    started, seen = fields.get("at"), fields.get("seen")
    issuer, subject = fields.get("iss"), fields.get("sub")
    if not (
        isinstance(name, str)
        and isinstance(sid, str)
        and isinstance(issuer, str)
        and isinstance(subject, str)
        and isinstance(started, int | float)
        and isinstance(seen, int | float)
    ):
        return "your sign-in could not be read; sign in again"
    if now - started >= oidc.session_max_seconds:
        return (
            f"your sign-in is older than {pages.duration(oidc.session_max_seconds)}; sign in again"
        )
    if now - seen >= oidc.session_idle_seconds:
        return (
            f"you were inactive for {pages.duration(oidc.session_idle_seconds)} and were "
            "signed out; sign in again"
        )
    if svc.store.token_used(_session_jti(sid)):
        return "this session was signed out; sign in again"
    approver = svc.settings.approvers.get(name)
    if approver is None:
        return f"'{name}' is no longer a configured approver; sign in again"
    return SignedIn(approver, sid, float(started), SignInIdentity(issuer, subject))


def start_session(approver: Approver, identity: SignInIdentity, now: float) -> None:
    """A new session for ``approver``: the browser's earlier one (CSRF secret, a link's
    binding, pending sign-ins) is dropped, so a planted cookie gains nothing."""
    session.clear()
    session[SESSION_KEY] = {
        "approver": approver.name,
        "iss": identity.issuer,
        "sub": identity.subject,
        "sid": secrets.token_urlsafe(24),
        "at": now,
        "seen": now,
    }
    session[pages.SESSION_APPROVER] = approver.name


def end_session(who: SignedIn) -> None:
    """Record the session's id as used: this cookie, and every copy, is signed out."""
    svc = services()
    svc.store.use_token(
        _session_jti(who.session_id),
        "oidc-session",
        who.signed_in_at + oidc_settings().session_max_seconds,
        svc.clock(),
    )
