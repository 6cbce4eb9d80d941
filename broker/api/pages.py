"""What every page for approvers shares: the locked-down response, the page model, rendering.

Both ways an approver proves who they are use it: the personal link
(:mod:`broker.api.approval_page`) and OIDC sign-in (:mod:`broker.api.oidc_signin`).
:func:`secure_pages` gives a blueprint the same protections: a strict
Content-Security-Policy (no script at all, styles only by per-response nonce, forms only to
this origin, never framed), no caching, broker errors as an HTML page (same status codes as
the JSON API), and a session cookie no script can read. Every page is autoescaped.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from flask import Blueprint, Response, g, make_response, render_template, request
from flask.blueprints import BlueprintSetupState
from flask_wtf.csrf import generate_csrf, validate_csrf
from wtforms.validators import ValidationError

from broker.api.common import services
from broker.approvals.difference import permission_difference
from broker.approvals.grant_view import GrantView, grant_view
from broker.approvals.history import recent_history
from broker.approvals.intent_view import IntentView, intent_view
from broker.approvals.pending import RequestView
from broker.approvals.service import Decision
from broker.config import Approver
from broker.errors import BadRequest, BrokerError, Forbidden
from broker.policy import quorum
from broker.policy.decision import OPEN_STATES, not_an_approver_of, not_eligible
from broker.policy.grants import describe_exception
from broker.policy.requester import SignInIdentity, agent_names_of
from broker.scopes.model import TIERS, Scope, VaultKv
from broker.store.records import RequestRecord

SESSION_APPROVER = "approver"  # the approver this browser acted as (link or sign-in)
MAX_REASON = 500
CSP = (
    "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'none'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

Via = Literal["link", "oidc"]


# -- the locked-down response ---------------------------------------------------------


def secure_pages(blueprint: Blueprint) -> None:
    """Serve ``blueprint``'s pages with the CSP nonce, headers, HTML errors and cookie."""
    blueprint.record_once(_cookie_settings)
    blueprint.before_request(_nonce)
    blueprint.after_request(_headers)
    blueprint.register_error_handler(BrokerError, _error_page)


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


def _nonce() -> None:
    g.csp_nonce = secrets.token_urlsafe(16)


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP.format(nonce=g.get("csp_nonce", "none"))
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_page(error: BrokerError) -> tuple[str, int]:
    """Broker errors raised by these pages, as HTML for a person (JSON for the API)."""
    return render_template("error.html", error=error), error.status


def render(template: str, status: int = 200, **context: Any) -> Response:
    response = make_response(render_template(template, **context), status)
    response.mimetype = "text/html"
    return response


# -- what a person reads --------------------------------------------------------------


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
    rule_sets: str  # "1 of payments-leads and 1 of sre-oncall" ('' for one set)
    exceptions: tuple[str, ...]  # escalation actions this tier grants on purpose (in red)
    sets_missing: tuple[str, ...]  # "1 more of sre-oncall"
    history: list[Mapping[str, Any]]
    may_approve: bool
    may_deny: bool
    note: str  # why a button is missing ('' when both are offered)
    link_used: bool
    intent: IntentView | None = None  # what the agent will do, when it said
    grant: GrantView | None = None  # exactly what is issued, and its SHA-256


def page_model(
    request_id: str,
    approver: Approver,
    link_jti: str | None = None,
    signed_in: SignInIdentity | None = None,
) -> PageModel:
    """The page for ``approver``; ``link_jti`` names the personal link in use, if any;
    ``signed_in`` their verified sign-in, if any (it may be the requesting agent's own).

    Only the request's approvers see it: anyone else (not listed for the tier now, the
    requester itself, or everyone once the tier's rule is gone) gets 403, audited, and
    learns nothing about the request.
    """
    svc = services()
    record = svc.approvals.get(request_id)
    rule = svc.approvals.rule_in_force(record)
    as_agents = agent_names_of(signed_in, svc.settings.identity.oidc)
    outsider = not_an_approver_of(record, approver, rule, as_agents)
    if outsider is not None:
        svc.audit.request_event(
            "view", "refused", f"approver:{approver.name}", record, reason=outsider.reason
        )
        raise outsider.error()
    view = svc.approvals.view(record)
    decided = tuple(
        Decided(a.approver, a.decision, a.via, iso(a.created_at))
        for a in svc.store.approvals_for(record.id)
    )
    adds: tuple[str, ...] = ()
    eligible: set[str] = set()
    link_used = link_jti is not None and svc.store.token_used(link_jti)
    intent = intent_view(record, _kv(record), svc.clock(), svc.settings.impact_report_seconds)
    try:
        scope, _, eligible = svc.approvals.eligible(record)
        adds = permission_difference(record, scope, svc.iam)
    except BrokerError as e:
        note, may_approve, may_deny = e.message, False, False
    else:
        note, may_approve, may_deny = _buttons(record, approver, eligible, decided, link_used)
    if intent is not None and intent.broken:
        note, may_approve = intent.broken, False  # denying stays possible
    return PageModel(
        record=record,
        view=view,
        approver=approver,
        claims=record.agent_claims,
        adds=adds,
        decided=decided,
        still_needed=max(
            record.approvals_required - view.approvals_received,
            quorum.short(rule.sets, view.approvers) if rule else 0,
            0,
        ),
        eligible_approvers=tuple(sorted(eligible)),
        rule_sets=rule.rule.describe_sets() if rule and len(rule.sets) > 1 else "",
        exceptions=escalation_exceptions(rule.scope, record.tier) if rule else (),
        sets_missing=tuple(quorum.missing(rule.sets, view.approvers)) if rule else (),
        history=[
            {**entry, "when": iso(entry["at"])}
            for entry in recent_history(svc.store, record.agent_subject, exclude=record.id)
        ],
        may_approve=may_approve,
        may_deny=may_deny,
        note=note,
        link_used=link_used,
        intent=intent,
        grant=grant_view(record),
    )


def _kv(record: RequestRecord) -> VaultKv | None:
    """The request environment's KV settings (a KV v2 update of delete/ paths destroys)."""
    scope = services().scopes.current.get(record.service)
    env = scope.environments.get(record.environment) if scope else None
    return env.vault if env else None


def escalation_exceptions(scope: Scope, tier: str) -> tuple[str, ...]:
    """The escalation actions granted on purpose up to ``tier`` (tiers are cumulative)."""
    return tuple(
        describe_exception(exception)
        for name in TIERS[: TIERS.index(tier) + 1]
        if name in scope.tiers
        for exception in scope.tiers[name].escalation_exceptions
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
    if approver.name not in eligible:  # page_model refuses them; never a button regardless
        return not_eligible(approver.name, record).reason + ".", False, False
    mine = next((d for d in decided if d.approver == approver.name), None)
    if mine is not None:
        done = "approved" if mine.decision == "approve" else "denied"
        return f"You already {done} it ({mine.at}): a second decision is not counted.", False, False
    if link_used:
        return (
            "This link was already used. Ask for a new one with the Review button in Slack.",
            False,
            False,
        )
    if record.status == "approved":
        return "The required approvals are in; you can still deny it.", False, True
    return "", True, True


def show_request(model: PageModel, via: Via, **context: Any) -> Response:
    """The approval page for ``model``, its viewing audited (opening a page decides nothing)."""
    record = model.record
    services().audit.request_event(
        "view",
        "viewed",
        f"approver:{model.approver.name}",
        record,
        via=via,
    )
    return render(
        "approve.html",
        model=model,
        csrf_token=generate_csrf(),
        iso=iso,
        duration=duration,
        max_reason=MAX_REASON,
        via=via,
        **context,
    )


def show_outcome(
    view: RequestView, decision: Decision, approver: Approver, **context: Any
) -> Response:
    """The page after a decision: the request's new state."""
    return render(
        "outcome.html",
        view=view,
        decision=decision,
        approver=approver,
        iso=iso,
        duration=duration,
        **context,
    )


# -- what a person sends --------------------------------------------------------------


def refuse_agents() -> None:
    """An agent's bearer token never approves, whatever link or session comes with it."""
    if request.headers.get("Authorization"):
        services().audit.record(
            "approve",
            "refused",
            "unauthenticated",
            reason="an agent credential was presented to the approval page",
            path=request.url_rule.rule if request.url_rule else "unmatched",  # no link token
        )
        raise Forbidden("agent credentials cannot approve; approvers use their personal links")


def require_csrf(action: str, retry: str) -> None:
    """The form's CSRF token is valid for this browser's session; 403 (audited) otherwise."""
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as e:
        services().audit.record(
            action, "refused", "unauthenticated", reason="missing or invalid CSRF token"
        )
        raise Forbidden(
            f"the form's security token is missing, invalid or expired; reload the page {retry}"
        ) from e


def chosen_decision() -> tuple[Decision, str]:
    """The form's decision and its optional reason (printable text, bounded); 400 otherwise."""
    decision = request.form.get("decision")
    if decision not in ("approve", "deny"):
        raise BadRequest("decision must be approve or deny", "decision")
    kept = "".join(c for c in request.form.get("reason", "") if c.isprintable() or c in "\n\t")
    return ("approve" if decision == "approve" else "deny"), kept.strip()[:MAX_REASON]
