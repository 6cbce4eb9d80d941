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

from flask import Blueprint, Response, session

from broker.api import oidc_signin, pages
from broker.api.common import services
from broker.approvals.links import LinkClaims
from broker.config import Approver
from broker.errors import BadRequest, Forbidden, Gone
from broker.ids import looks_like_request_id
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


@blueprint.get("/approve/<token>")
def show(token: str) -> Response:
    """The request a personal link names, for its approver to read. Changes nothing.

    200 the page (with Approve/Deny when this approver may decide now); 401 forged,
    malformed or expired link; 403 agent credentials, an approver no longer configured,
    or a browser signed in as another approver; 404 no such request.
    """
    pages.refuse_agents()
    claims, approver = _approver(token)
    model = pages.page_model(claims.request_id, approver, claims.jti)
    response = pages.show_request(model, "link")
    session[pages.SESSION_APPROVER] = approver.name
    return response


@blueprint.post("/approve/<token>")
def act(token: str) -> Response:
    """Approve or deny through a personal link, once.

    200 the decision was recorded (the page shows the request's new state); 400 no or an
    unknown decision; 401 forged, malformed or expired link; 403 missing or invalid CSRF
    token, agent credentials, another approver's browser, or an approval rule refused it
    (requester, not listed for the tier, Slack-only tier, change freeze); 404 no such
    request; 409 the request is already decided; 410 this link was already used.
    """
    pages.refuse_agents()
    pages.require_csrf("approve", "from your link and decide again")
    claims, approver = _approver(token)
    chosen, reason = pages.chosen_decision()
    svc = services()
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
        raise Gone(
            "this link was already used"
            + (f" (your decision is recorded: {mine.decision})" if mine else "")
            + "; ask for a new one with the Review button in Slack"
        )
    session[pages.SESSION_APPROVER] = approver.name
    view = svc.approvals.decide(claims.request_id, approver.name, chosen, "link", reason)
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
