"""OIDC sign-in for approvers: the approval page's second way to prove who you are.

With ``approvals.oidc`` configured, ``GET /requests/<id>`` (the address in Slack) offers
"Sign in". ``GET /auth/login?next=...`` sends the browser to the provider: the
authorization code flow with PKCE (S256), ``state`` and ``nonce``, through authlib's Flask
client, the endpoints read from ``{issuer}/.well-known/openid-configuration``.
``GET /auth/callback`` exchanges the code (authenticating with the client secret) and
validates the ID token: signature against the provider's JWKS, issuer, audience, nonce,
expiry. The configured claim (``approver_claim``) then names one configured approver
(``email`` matches ``Approver.email``; any other claim, ``sub`` for instance, matches
``Approver.oidc_subject``), and a fresh session holds that approver. Signed in,
``GET /requests/<id>`` is the full approval page and ``POST /requests/<id>`` decides
through :meth:`ApprovalService.decide` with ``via="oidc"``, which enforces every rule.
``POST /auth/logout`` signs out.

The session is Flask's signed cookie (HttpOnly, SameSite=Lax, Secure under https; see
:mod:`broker.api.approval_page`). It holds the approver's name, a random session id and
when it started and was last used: it ends after ``session_idle`` without a request,
after ``session_max`` in any case, and at sign-out, when its id is recorded in the store
(like a used link's) so that a copy of the cookie is refused on every replica too.
Signing in starts a new session: nothing of the browser's earlier session survives.

Nothing secret is kept or written anywhere: the code, the access and ID tokens are used
once during the callback and dropped, the client secret only goes to the token endpoint,
and audit records and errors name claims (never tokens). An agent's bearer token is
refused on every page here, as on the personal-link page.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Response, current_app, g, redirect, request, session, url_for
from flask.blueprints import Blueprint, BlueprintSetupState
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.wrappers import Response as BaseResponse
from wtforms.validators import ValidationError

from broker.api import approval_page as page
from broker.api.common import services
from broker.approvals.service import Decision
from broker.config import ALGORITHMS, Approver, OidcSignIn, oidc_sign_in_problem
from broker.errors import (
    BadRequest,
    BrokerError,
    ConfigError,
    Forbidden,
    Unauthenticated,
    UpstreamUnavailable,
)
from broker.ids import looks_like_request_id

blueprint = Blueprint("oidc_signin", __name__)
# The same locked-down pages as the personal-link page: CSP nonce, headers, HTML errors.
blueprint.before_request(page._nonce)
blueprint.after_request(page._headers)
blueprint.register_error_handler(BrokerError, page._error_page)

CLIENT = "approver_oidc"  # authlib's name for the provider (its session keys carry it)
EXTENSION = "broker.oidc_signin"
DISCOVERY = "/.well-known/openid-configuration"
SCOPE = "openid email profile"
SESSION_KEY = "oidc"
STATE_PREFIX = f"_state_{CLIENT}_"
LOGIN_WINDOW_SECONDS = 600  # from "Sign in" to the callback
ID_TOKEN_LEEWAY_SECONDS = 60
MAX_NEXT = 512
MAX_CLAIM = 256
SAFE_NEXT = re.compile(r"/(?![/\\])[\x21-\x7e]*")  # printable ASCII, no "//" or "/\" start


# -- set-up ---------------------------------------------------------------------------


@blueprint.record_once
def _configure(state: BlueprintSetupState) -> None:
    """With ``approvals.oidc`` set, build the provider's client and add the routes.

    Without it none of these routes exist. A client secret is required and the issuer
    must be https (http only on this machine): the broker refuses to start otherwise.
    """
    app = state.app
    settings = app.extensions["broker"].settings
    oidc: OidcSignIn | None = settings.approvals.oidc
    if oidc is None:
        return
    problem = oidc_sign_in_problem(oidc)  # `broker config check` reports it too
    if problem:
        raise ConfigError(problem)
    oauth = OAuth(app)
    app.extensions[EXTENSION] = oauth.register(
        CLIENT,
        client_id=oidc.client_id,
        client_secret=oidc.client_secret,
        server_metadata_url=oidc.issuer.rstrip("/") + DISCOVERY,
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic",
            "default_timeout": settings.upstream_deadline_seconds,
        },
    )
    state.add_url_rule("/auth/login", view_func=login, methods=["GET"])
    state.add_url_rule("/auth/callback", view_func=callback, methods=["GET"])
    state.add_url_rule("/auth/logout", view_func=logout, methods=["POST"])
    state.add_url_rule("/requests/<request_id>", view_func=decide, methods=["POST"])


def configured() -> bool:
    """True when this app offers OIDC sign-in."""
    return EXTENSION in current_app.extensions


def _client() -> Any:
    return current_app.extensions[EXTENSION]


def _settings() -> OidcSignIn:
    oidc = services().settings.approvals.oidc
    assert oidc is not None, "routes exist only when approvals.oidc is set"
    return oidc


def _redirect_uri() -> str:
    return f"{services().settings.public_url}/auth/callback"


# -- the session ----------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    approver: Approver
    session_id: str
    signed_in_at: float


@dataclass(frozen=True)
class SignInOffer:
    """The "Sign in" link of the request page, and why an earlier session ended."""

    url: str
    note: str


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
    oidc = _settings()
    now = svc.clock()
    fields = data if isinstance(data, dict) else {}
    name, sid = fields.get("approver"), fields.get("sid")
    started, seen = fields.get("at"), fields.get("seen")
    if not (
        isinstance(name, str)
        and isinstance(sid, str)
        and isinstance(started, int | float)
        and isinstance(seen, int | float)
    ):
        return "your sign-in could not be read; sign in again"
    if now - started >= oidc.session_max_seconds:
        return (
            f"your sign-in is older than {page.duration(oidc.session_max_seconds)}; sign in again"
        )
    if now - seen >= oidc.session_idle_seconds:
        return (
            f"you were inactive for {page.duration(oidc.session_idle_seconds)} and were "
            "signed out; sign in again"
        )
    if svc.store.token_used(_session_jti(sid)):
        return "this session was signed out; sign in again"
    approver = svc.settings.approvers.get(name)
    if approver is None:
        return f"'{name}' is no longer a configured approver; sign in again"
    return SignedIn(approver, sid, float(started))


def _start_session(approver: Approver, now: float) -> None:
    """A new session for ``approver``: the browser's earlier one (CSRF secret, a link's
    binding, pending sign-ins) is dropped, so a planted cookie gains nothing."""
    session.clear()
    session[SESSION_KEY] = {
        "approver": approver.name,
        "sid": secrets.token_urlsafe(24),
        "at": now,
        "seen": now,
    }
    session[page.SESSION_APPROVER] = approver.name


def _end_session(who: SignedIn) -> None:
    """Record the session's id as used: this cookie, and every copy, is signed out."""
    svc = services()
    svc.store.use_token(
        _session_jti(who.session_id),
        "oidc-session",
        who.signed_in_at + _settings().session_max_seconds,
        svc.clock(),
    )


# -- helpers --------------------------------------------------------------------------


def _safe_next(value: str | None) -> str | None:
    """A path on this site to return to, or None; anything else is refused (no open
    redirect: no scheme, no host, no "//" or backslash, printable ASCII only)."""
    if value is None or value == "":
        return None
    if len(value) > MAX_NEXT or not SAFE_NEXT.fullmatch(value):
        raise BadRequest("next must be a path on this site, such as /requests/req_...", "next")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        raise BadRequest("next must be a path on this site, such as /requests/req_...", "next")
    return value


def _printable(text: object, limit: int = 64) -> str:
    kept = "".join(c for c in str(text) if c.isprintable())
    return kept[:limit] or "?"


def _require_csrf(action: str) -> None:
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as e:
        services().audit.record(
            action, "refused", "unauthenticated", reason="missing or invalid CSRF token"
        )
        raise Forbidden(
            "the form's security token is missing, invalid or expired; reload the page "
            "and try again"
        ) from e


def _refuse_sign_in(error: BrokerError, actor: str = "", **details: Any) -> BrokerError:
    """Audit a refused sign-in; returns the error for the caller to raise."""
    services().audit.record(
        "sign_in",
        "refused",
        actor or f"unauthenticated ({request.remote_addr or 'unknown'})",
        reason=error.message,
        **details,
    )
    return error


def _metadata(client: Any) -> Mapping[str, Any]:
    """The provider's discovery document; 503 when unreadable or naming another issuer."""
    try:
        metadata: Mapping[str, Any] = client.load_server_metadata()
    except Exception as e:  # noqa: BLE001 - requests, HTTP status or JSON errors alike
        raise UpstreamUnavailable(
            f"the sign-in provider cannot be reached ({type(e).__name__})", "oidc"
        ) from e
    if metadata.get("issuer") != _settings().issuer:
        client.server_metadata.pop("_loaded_at", None)  # read it again next time
        raise UpstreamUnavailable(
            "the sign-in provider's discovery document names another issuer", "oidc"
        )
    return metadata


def _describe(error: Exception) -> str:
    """Why an ID token was refused, in words, from the library's error (never the token)."""
    claim = getattr(error, "claim", None)
    code = getattr(error, "error", None)
    if code == "expired_token":
        return "it has expired"
    if isinstance(claim, str):
        word = "missing" if code == "missing_claim" else "invalid"
        return f"its '{_printable(claim)}' claim is {word}"
    if isinstance(code, str):
        return _printable(code).replace("_", " ")
    return type(error).__name__


def _claim_value(
    client: Any, token: Mapping[str, Any], claims: Mapping[str, Any], name: str
) -> str:
    """The configured claim from the ID token, or from userinfo when the token lacks it."""
    source: Mapping[str, Any] = claims
    if name not in claims and _metadata(client).get("userinfo_endpoint"):
        try:
            source = client.userinfo(token=token)
        except Exception as e:  # noqa: BLE001 - the provider's answer is not usable
            raise UpstreamUnavailable(
                f"the sign-in provider's userinfo failed ({type(e).__name__})", "oidc"
            ) from e
        if source.get("sub") != claims.get("sub"):
            raise Unauthenticated("the provider's userinfo is about another subject")
    value = source.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_CLAIM:
        raise Unauthenticated(f"the provider did not say who you are (no '{_printable(name)}')")
    if name == "email" and source.get("email_verified") in (False, "false"):
        raise Unauthenticated(f"the provider has not verified the email address {value}")
    return value


def _approver_for(claim: str, value: str) -> Approver:
    """The one configured approver the claim names; 403 for none or several."""
    approvers = services().settings.approvers.values()
    if claim == "email":
        matches = [a for a in approvers if a.email and a.email.casefold() == value.casefold()]
    else:
        matches = [a for a in approvers if a.oidc_subject == value]
    if len(matches) != 1:
        field = "email" if claim == "email" else "oidc_subject"
        raise Forbidden(
            f"{value} is not a configured approver"
            if not matches
            else f"several approvers have {field} {value}; ask an operator to fix the config"
        )
    return matches[0]


# -- views ----------------------------------------------------------------------------


def request_page(request_id: str) -> Response:
    """``GET /requests/<id>`` with sign-in configured (called by the approval page).

    200 signed in: the full approval page (Approve/Deny when this approver may decide);
    otherwise how to act, with "Sign in", revealing nothing about the request. 403 agent
    credentials; 404 no such request (signed in only).
    """
    page._refuse_agents()
    who = signed_in()
    if who is None:
        offer = SignInOffer(
            url=url_for("oidc_signin.login", next=f"/requests/{request_id}"),
            note=g.get("sign_in_ended", ""),
        )
        return page._render("request.html", request_id=request_id, sign_in=offer)
    model = page._model(request_id, who.approver)
    record = model.record
    services().audit.record(
        "view",
        "viewed",
        f"approver:{who.approver.name}",
        request_id=record.id,
        service=record.service,
        environment=record.environment,
        tier=record.tier,
        via="oidc",
    )
    return page._render(
        "approve.html",
        model=model,
        csrf_token=generate_csrf(),
        iso=page.iso,
        duration=page.duration,
        max_reason=page.MAX_REASON,
        via="oidc",
        issuer=_settings().issuer,
        here=f"/requests/{record.id}",
    )


def decide(request_id: str) -> Response:
    """Approve or deny as the signed-in approver.

    200 the decision was recorded (the page shows the request's new state); 400 malformed
    request id, no or an unknown decision; 401 not signed in, or the session ended; 403
    missing or invalid CSRF token, agent credentials, or an approval rule refused it
    (requester, not listed for the tier, break-glass, change freeze); 404 no such request;
    409 the request is already decided.
    """
    if not looks_like_request_id(request_id):
        raise BadRequest("malformed request id", "request_id")
    page._refuse_agents()
    _require_csrf("approve")
    who = signed_in()
    if who is None:
        services().audit.record(
            "approve",
            "refused",
            "unauthenticated",
            reason="not signed in: " + g.get("sign_in_ended", "no session"),
            request_id=request_id,
            via="oidc",
        )
        raise Unauthenticated(
            g.get("sign_in_ended", "") or "you are not signed in; sign in from the request's page"
        )
    decision = request.form.get("decision")
    if decision not in ("approve", "deny"):
        raise BadRequest("decision must be approve or deny", "decision")
    chosen: Decision = "approve" if decision == "approve" else "deny"
    reason = page._clean(request.form.get("reason", ""))
    view = services().approvals.decide(request_id, who.approver.name, chosen, "oidc", reason)
    return page._render(
        "outcome.html",
        view=view,
        decision=chosen,
        approver=who.approver,
        iso=page.iso,
        duration=page.duration,
        via="oidc",
        issuer=_settings().issuer,
    )


def login() -> BaseResponse:
    """Start signing in: send the browser to the provider.

    302 to the provider's authorization endpoint (code flow, PKCE S256, state, nonce); 400
    a ``next`` that is not a path on this site; 403 agent credentials; 503 the provider's
    discovery document cannot be read or names another issuer.
    """
    page._refuse_agents()
    target = _safe_next(request.args.get("next"))
    client = _client()
    _metadata(client)
    redirect_uri = _redirect_uri()
    try:
        started = client.create_authorization_url(redirect_uri)
    except Exception as e:  # noqa: BLE001 - the discovery document lacks an endpoint
        raise UpstreamUnavailable(
            f"the sign-in provider cannot be used ({type(e).__name__})", "oidc"
        ) from e
    for key in [k for k in session if k.startswith(STATE_PREFIX)]:
        session.pop(key)  # one sign-in at a time: the cookie stays small
    client.save_authorize_data(
        redirect_uri=redirect_uri, next=target, started=services().clock(), **started
    )
    return redirect(started["url"], 302)


def callback() -> BaseResponse:
    """The provider sends the browser back here with a code (or an error).

    303 to ``next`` (200 a "signed in" page without one); 400 no sign-in in progress in
    this browser (missing or unknown state); 401 the provider refused, the sign-in was
    replayed or took too long, or the ID token is invalid (signature, issuer, audience,
    nonce, expiry, algorithm) or names nobody; 403 agent credentials, a user who is not a
    configured approver, or a browser signed in as another approver; 503 the provider
    cannot be reached.
    """
    page._refuse_agents()
    svc = services()
    now = svc.clock()
    client = _client()
    oidc = _settings()
    _metadata(client)  # this replica may not have read it yet: check its issuer here too
    state = request.args.get("state", "")
    pending = client.framework.get_state_data(session, state) if state else None
    if not isinstance(pending, dict):
        raise _refuse_sign_in(
            BadRequest(
                "no sign-in is in progress in this browser (or it was completed); sign in "
                "again from the request's page"
            )
        )
    if request.args.get("error"):
        client.framework.clear_state_data(session, state)
        raise _refuse_sign_in(
            Unauthenticated(
                f"the provider refused the sign-in ({_printable(request.args['error'])})"
            )
        )
    started = pending.get("started")
    if not isinstance(started, int | float) or now - started > LOGIN_WINDOW_SECONDS:
        client.framework.clear_state_data(session, state)
        raise _refuse_sign_in(Unauthenticated("the sign-in took too long; sign in again"))
    state_id = hashlib.sha256(state.encode()).hexdigest()[:48]
    if not svc.store.use_token(
        f"oidc-state:{state_id}", "oidc-sign-in", started + LOGIN_WINDOW_SECONDS, now
    ):
        client.framework.clear_state_data(session, state)
        raise _refuse_sign_in(Unauthenticated("this sign-in was already completed"))
    try:
        token = client.authorize_access_token(
            claims_options={
                "iss": {"essential": True, "value": oidc.issuer},
                "aud": {"essential": True, "value": oidc.client_id},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
                "nonce": {"essential": True},
            },
            leeway=ID_TOKEN_LEEWAY_SECONDS,
        )
    except OAuthError as e:
        raise _refuse_sign_in(
            Unauthenticated(f"the provider refused the code ({_printable(e.error)})")
        ) from e
    except requests.RequestException as e:
        raise UpstreamUnavailable(
            f"the sign-in provider cannot be reached ({type(e).__name__})", "oidc"
        ) from e
    except Exception as e:  # noqa: BLE001 - joserfc's claim and signature errors, bad JSON
        raise _refuse_sign_in(
            Unauthenticated(f"the provider's ID token was refused: {_describe(e)}")
        ) from e
    claims = token.get("userinfo")
    if not claims or not isinstance(token.get("id_token"), str):
        raise _refuse_sign_in(Unauthenticated("the provider returned no ID token"))
    algorithm = jwt.get_unverified_header(token["id_token"]).get("alg")
    if algorithm not in ALGORITHMS:  # asymmetric only: never "none" or a shared secret
        raise _refuse_sign_in(
            Unauthenticated(f"the ID token's algorithm {_printable(algorithm)} is not allowed")
        )
    subject = _printable(claims.get("sub"), MAX_CLAIM)
    try:
        value = _claim_value(client, token, claims, oidc.approver_claim)
        approver = _approver_for(oidc.approver_claim, value)
    except (Unauthenticated, Forbidden) as e:
        raise _refuse_sign_in(e, f"oidc:{subject}", claim=oidc.approver_claim) from e
    previous = signed_in()  # an ended session (and the browser's binding) is dropped
    bound = session.get(page.SESSION_APPROVER)
    if bound is not None and bound != approver.name:
        raise _refuse_sign_in(
            Forbidden(
                f"this browser acted as {bound}; sign out, or use another browser, to "
                f"sign in as {approver.name}"
            ),
            f"approver:{approver.name}",
        )
    target = pending.get("next")
    if previous is not None:
        _end_session(previous)  # signing in again: copies of the old cookie die too
    _start_session(approver, now)
    svc.audit.record(
        "sign_in",
        "signed_in",
        f"approver:{approver.name}",
        claim=oidc.approver_claim,
        oidc_subject=subject,
        issuer=oidc.issuer,
    )
    if isinstance(target, str) and _safe_next(target):
        return redirect(target, 303)
    return page._render(
        "signed_in.html",
        approver=approver,
        issuer=oidc.issuer,
        csrf_token=generate_csrf(),
    )


def logout() -> Response:
    """Sign out: this session ends, on every replica, copies of its cookie included.

    200 the signed-out page; 400 a ``next`` that is not a path on this site; 403 missing
    or invalid CSRF token, or agent credentials.
    """
    page._refuse_agents()
    _require_csrf("sign_in")
    target = _safe_next(request.form.get("next"))
    who = signed_in()
    if who is not None:
        _end_session(who)
        services().audit.record(
            "sign_in", "signed_out", f"approver:{who.approver.name}", issuer=_settings().issuer
        )
    session.clear()
    return page._render("signed_out.html", back=target)
