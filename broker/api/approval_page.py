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

The pages are HTML for people, so this blueprint renders broker errors as an HTML page
(same status codes as the JSON API); every page is autoescaped and served with a strict
Content-Security-Policy: no script at all, styles only by per-response nonce, forms only
to this origin, never framed.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, g, make_response, render_template, request, session
from flask.blueprints import BlueprintSetupState
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms.validators import ValidationError

from broker.api.common import services
from broker.approvals.links import LinkClaims
from broker.approvals.service import OPEN_STATES, Decision, RequestView
from broker.config import Approver
from broker.errors import BadRequest, BrokerError, Forbidden, Gone
from broker.ids import looks_like_request_id
from broker.store.records import ApprovalRecord, RequestRecord

blueprint = Blueprint("approval_page", __name__)

SESSION_APPROVER = "approver"
MAX_REASON = 500
CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


@blueprint.record_once
def _cookie_settings(state: BlueprintSetupState) -> None:
    """The session cookie holds the CSRF secret: never readable by script, never sent
    cross-site on a POST, HTTPS-only (with the __Host- prefix) when the broker is."""
    app = state.app
    secure = app.config.get("PREFERRED_URL_SCHEME") == "https"
    app.config.update(
        SESSION_COOKIE_NAME="__Host-broker-session" if secure else "broker-session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        WTF_CSRF_TIME_LIMIT=3600,
    )


@blueprint.before_request
def _nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP.format(nonce=g.get("csp_nonce", "none"))
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(BrokerError)
def _error_page(error: BrokerError) -> tuple[str, int]:
    """Broker errors raised by these pages, as HTML for a person (JSON for the API)."""
    return render_template("error.html", error=error), error.status


# -- what the page shows --------------------------------------------------------------


@dataclass(frozen=True)
class Decided:
    approver: str
    decision: str
    via: str
    at: str


@dataclass(frozen=True)
class PageModel:
    """Everything the approval page shows about one request, already in words."""

    record: RequestRecord
    view: RequestView
    approver: Approver
    claims: Mapping[str, str]
    adds: tuple[str, ...]
    decided: tuple[Decided, ...]
    still_needed: int
    eligible_approvers: tuple[str, ...]
    history: list[Mapping[str, Any]]
    may_approve: bool
    may_deny: bool
    note: str  # why a button is missing ('' when both are offered)
    link_used: bool


def iso(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: int) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _model(request_id: str, approver: Approver, link_jti: str | None = None) -> PageModel:
    """The page for ``approver``; ``link_jti`` names the personal link in use, if any."""
    svc = services()
    record = svc.approvals.get(request_id)
    view = svc.approvals.view(record)
    decided = tuple(
        Decided(a.approver, a.decision, a.via, iso(a.created_at))
        for a in svc.store.approvals_for(record.id)
    )
    adds: tuple[str, ...] = ()
    eligible: set[str] = set()
    link_used = link_jti is not None and svc.store.token_used(link_jti)
    try:
        scope, _, eligible = svc.approvals.eligible(record)
        adds = svc.approvals.permission_difference(record, scope)
    except BrokerError as e:
        note, may_approve, may_deny = e.message, False, False
    else:
        note, may_approve, may_deny = _buttons(record, approver, eligible, decided, link_used)
    return PageModel(
        record=record,
        view=view,
        approver=approver,
        claims=record.agent_claims,
        adds=adds,
        decided=decided,
        still_needed=max(0, record.approvals_required - view.approvals_received),
        eligible_approvers=tuple(sorted(eligible)),
        history=[
            {**entry, "when": iso(entry["at"])}
            for entry in svc.approvals.recent_history(record.agent_subject, exclude=record.id)
        ],
        may_approve=may_approve,
        may_deny=may_deny,
        note=note,
        link_used=link_used,
    )


def _buttons(
    record: RequestRecord,
    approver: Approver,
    eligible: set[str],
    decided: tuple[Decided, ...],
    link_used: bool,
) -> tuple[str, bool, bool]:
    """(note, may approve, may deny) for the page; the server re-checks every rule on POST."""
    if record.status not in OPEN_STATES:
        return f"This request is {record.status}; nothing is left to decide.", False, False
    if approver.name not in eligible:
        return (
            f"{approver.name} is not an approver for tier {record.tier} of {record.service}.",
            False,
            False,
        )
    mine = next((d for d in decided if d.approver == approver.name), None)
    if mine is not None:
        return f"You already decided: {mine.decision} ({mine.at}).", False, False
    if link_used:
        return (
            "This link was already used. Ask for a new one with the Review button in Slack.",
            False,
            False,
        )
    if record.status == "approved":
        return "The required approvals are in; you can still deny it.", False, True
    return "", True, True


# -- identity -------------------------------------------------------------------------


def _refuse_agents() -> None:
    """An agent's bearer token never approves, whatever link comes with it."""
    if request.headers.get("Authorization"):
        services().audit.record(
            "approve",
            "refused",
            "unauthenticated",
            reason="an agent credential was presented to the approval page",
            path=request.url_rule.rule if request.url_rule else "unmatched",  # no link token
        )
        raise Forbidden("agent credentials cannot approve; approvers use their personal links")


def _approver(token: str) -> tuple[LinkClaims, Approver]:
    svc = services()
    claims = svc.links.parse(token, now=svc.clock())
    approver = svc.approvals.approver_identity(claims.approver)
    signed_in = session.get(SESSION_APPROVER)
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


def _render(template: str, status: int = 200, **context: Any) -> Response:
    response = make_response(render_template(template, **context), status)
    response.mimetype = "text/html"
    return response


# -- views ----------------------------------------------------------------------------


@blueprint.get("/approve/<token>")
def show(token: str) -> Response:
    """The request a personal link names, for its approver to read. Changes nothing.

    200 the page (with Approve/Deny when this approver may decide now); 401 forged,
    malformed or expired link; 403 agent credentials, an approver no longer configured,
    or a browser signed in as another approver; 404 no such request.
    """
    _refuse_agents()
    claims, approver = _approver(token)
    model = _model(claims.request_id, approver, claims.jti)
    svc = services()
    record = model.record
    svc.audit.record(
        "view",
        "viewed",
        f"approver:{approver.name}",
        request_id=record.id,
        service=record.service,
        environment=record.environment,
        tier=record.tier,
        via="link",
    )
    session[SESSION_APPROVER] = approver.name
    return _render(
        "approve.html",
        model=model,
        csrf_token=generate_csrf(),
        iso=iso,
        duration=duration,
        max_reason=MAX_REASON,
    )


@blueprint.post("/approve/<token>")
def act(token: str) -> Response:
    """Approve or deny through a personal link, once.

    200 the decision was recorded (the page shows the request's new state); 400 no or an
    unknown decision; 401 forged, malformed or expired link; 403 missing or invalid CSRF
    token, agent credentials, another approver's browser, or an approval rule refused it
    (requester, not listed for the tier, Slack-only tier, change freeze); 404 no such
    request; 409 the request is already decided; 410 this link was already used.
    """
    _refuse_agents()
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as e:
        services().audit.record(
            "approve", "refused", "unauthenticated", reason="missing or invalid CSRF token"
        )
        raise Forbidden(
            "the form's security token is missing, invalid or expired; reload the page "
            "from your link and decide again"
        ) from e
    claims, approver = _approver(token)
    decision = request.form.get("decision")
    if decision not in ("approve", "deny"):
        raise BadRequest("decision must be approve or deny", "decision")
    chosen: Decision = "approve" if decision == "approve" else "deny"
    reason = _clean(request.form.get("reason", ""))
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
    session[SESSION_APPROVER] = approver.name
    view = svc.approvals.decide(claims.request_id, approver.name, chosen, "link", reason)
    return _render(
        "outcome.html", view=view, decision=chosen, approver=approver, iso=iso, duration=duration
    )


@blueprint.get("/requests/<request_id>")
def about(request_id: str) -> Response:
    """How to act on a request; reveals nothing about it (not even whether it exists).

    With OIDC sign-in configured, :func:`broker.api.oidc_signin.request_page` answers
    instead (the full page once signed in; see its status codes).

    200 the page; 400 malformed request id.
    """
    if not looks_like_request_id(request_id):
        raise BadRequest("malformed request id", "request_id")
    from broker.api import oidc_signin  # imported here: it builds on this module

    if oidc_signin.configured():
        return oidc_signin.request_page(request_id)
    return _render("request.html", request_id=request_id)


def _clean(text: str) -> str:
    """The optional reason: printable text, bounded."""
    kept = "".join(c for c in text if c.isprintable() or c in "\n\t")
    return kept.strip()[:MAX_REASON]


def _recorded(approvals: list[ApprovalRecord], approver: str) -> ApprovalRecord | None:
    return next((a for a in approvals if a.approver == approver), None)
