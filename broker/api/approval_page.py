"""The approval page: what an approver reads before saying yes or no, and the two buttons.

``GET /approve/<token>`` shows the request named by a personal link and changes nothing
(mail and chat scanners open links; only a "viewed" audit record is written). Approve and
Deny are ``POST``s to the same address carrying a CSRF token (Flask-WTF, bound to this
browser's session cookie); the link's ``jti`` is consumed first, so a link decides once,
on any replica. ``GET /requests/<id>`` tells anyone holding a request's address how an
approver acts on it, without revealing anything about the request (with OIDC sign-in
configured, a signed-in approver gets the full page there: :mod:`broker.api.oidc_signin`).

Who is acting comes only from the signed link (never from the request's other headers):
a request carrying an agent's bearer token is refused outright, and a browser that
acted as one approver cannot then act through another approver's link.

The pages are HTML for people, locked down as :mod:`broker.api.pages` describes (broker
errors as an HTML page with the JSON API's status codes, a strict Content-Security-Policy).
"""

from __future__ import annotations

from flask import Blueprint, Response, g, session, url_for

from broker.api import oidc_signin, pages
from broker.api.common import services
from broker.api.signin_session import signed_in, signed_in_identity
from broker.approvals.links import LinkClaims
from broker.config import Approver
from broker.errors import BadRequest, Forbidden, Gone, Unauthenticated
from broker.ids import looks_like_request_id
from broker.policy.decision import second_ballot
from broker.store.records import ApprovalRecord

blueprint = Blueprint("approval_page", __name__)
pages.secure_pages(blueprint)


# -- identity -------------------------------------------------------------------------


def _approver(token: str) -> tuple[LinkClaims, Approver]:
    svc = services()
    claims = svc.links.parse(token, now=svc.clock())
    approver = svc.approvals.approver_identity(claims.approver)
    signed_in = session.get(pages.SESSION_APPROVER)
    if signed_in is not None and signed_in != approver.name:
        svc.audit.record(
            "approve",
            "refused",
            f"approver:{signed_in}",
            reason=f"this browser acted as {signed_in}; refused a link of {approver.name}",
            request_id=claims.request_id,
        )
        raise Forbidden(
            f"this browser is signed in as {signed_in}; a link of {approver.name} "
            "must be opened by that approver"
        )
    return claims, approver


# -- views ----------------------------------------------------------------------------


def _needs_sign_in(claims: LinkClaims, approver: Approver) -> bool:
    """A delete's link works only for its approver signed in, when sign-in is configured:
    possession of the link is not enough (a forwarded or leaked link approves nothing)."""
    if not oidc_signin.configured():
        return False
    record = services().approvals.get(claims.request_id)
    if record.tier != "delete":
        return False
    who = signed_in()
    return who is None or who.approver.name != approver.name


def _sign_in_first(token: str, claims: LinkClaims, approver: Approver) -> Response:
    """The page of a delete link opened without signing in as its approver."""
    svc = services()
    who = signed_in()
    svc.audit.record(
        "view",
        "refused",
        f"approver:{who.approver.name}" if who else "unauthenticated",
        reason=f"a delete link of {approver.name} needs {approver.name} signed in",
        request_id=claims.request_id,
        via="link",
    )
    offer = oidc_signin.SignInOffer(
        url=url_for("oidc_signin.login", next=f"/approve/{token}"),
        note=g.get("sign_in_ended", ""),
    )
    return pages.render(
        "link_sign_in.html",
        status=401,
        approver=approver,
        sign_in=offer,
        signed_in_as=who.approver.name if who else None,
    )


@blueprint.get("/approve/<token>")
def show(token: str) -> Response:
    """The request a personal link names, for its approver to read. Changes nothing.

    200 the page (with Approve/Deny when this approver may decide now); 401 forged,
    malformed or expired link, or a delete's link while its approver is not signed in
    (with sign-in configured: the page offers it); 403 agent credentials, an approver no
    longer configured, a browser signed in as another approver, or an approver who is not
    one of this request's (no longer listed, or the requester); 404 no such request.
    """
    pages.refuse_agents()
    claims, approver = _approver(token)
    if _needs_sign_in(claims, approver):
        return _sign_in_first(token, claims, approver)
    model = pages.page_model(
        claims.request_id, approver, claims.jti, signed_in=signed_in_identity(approver)
    )
    response = pages.show_request(
        model,
        "link",
        possession_only=model.record.tier == "delete" and not oidc_signin.configured(),
    )
    session[pages.SESSION_APPROVER] = approver.name
    return response


@blueprint.post("/approve/<token>")
def act(token: str) -> Response:
    """Approve or deny through a personal link, once.

    200 the decision was recorded (the page shows the request's new state); 400 no or an
    unknown decision; 401 forged, malformed or expired link, or a delete's link while its
    approver is not signed in (with sign-in configured); 403 missing or invalid CSRF
    token, agent credentials, another approver's browser, or an approval rule refused it
    (requester, not listed for the tier, Slack-only tier, change freeze); 404 no such
    request; 409 the request is already decided, or this approver already decided it (not
    counted again); 410 this link was already used.
    """
    pages.refuse_agents()
    pages.require_csrf("approve", "from your link and decide again")
    claims, approver = _approver(token)
    chosen, reason = pages.chosen_decision()
    svc = services()
    if _needs_sign_in(claims, approver):
        svc.audit.record(
            chosen,
            "refused",
            f"approver:{approver.name}",
            reason="a delete link used without its approver signed in",
            request_id=claims.request_id,
            via="link",
        )
        raise Unauthenticated(
            f"a delete needs {approver.name} signed in: the link alone is not enough; sign "
            "in from the link's page, then decide"
        )
    if not svc.store.use_token(claims.jti, claims.request_id, claims.expires_at, svc.clock()):
        mine = _recorded(svc.store.approvals_for(claims.request_id), approver.name)
        svc.audit.record(
            chosen,
            "refused",
            f"approver:{approver.name}",
            reason="approval link replayed",
            request_id=claims.request_id,
            via="link",
        )
        if mine is not None:
            raise Gone(f"{second_ballot(mine).reason}: this link was already used")
        raise Gone("this link was already used; ask for a new one with the Review button in Slack")
    session[pages.SESSION_APPROVER] = approver.name
    view = svc.approvals.decide(
        claims.request_id,
        approver.name,
        chosen,
        "link",
        reason,
        signed_in=signed_in_identity(approver),
    )
    return pages.show_outcome(view, chosen, approver)


@blueprint.get("/requests/<request_id>")
def about(request_id: str) -> Response:
    """How to act on a request; reveals nothing about it (not even whether it exists).

    With OIDC sign-in configured, :func:`broker.api.oidc_signin.request_page` answers
    instead (the full page once signed in; see its status codes).

    200 the page; 400 malformed request id.
    """
    if not looks_like_request_id(request_id):
        raise BadRequest("malformed request id", "request_id")
    if oidc_signin.configured():
        return oidc_signin.request_page(request_id)
    return pages.render("request.html", request_id=request_id)


def _recorded(approvals: list[ApprovalRecord], approver: str) -> ApprovalRecord | None:
    return next((a for a in approvals if a.approver == approver), None)
