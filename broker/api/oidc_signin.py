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
:mod:`broker.api.pages`); how long it lives and how it ends is
:mod:`broker.api.signin_session`. Signing in starts a new session: nothing of the
browser's earlier session survives.

Nothing secret is kept or written anywhere: the code, the access and ID tokens are used
once during the callback and dropped, the client secret only goes to the token endpoint,
and audit records and errors name claims (never tokens). An agent's bearer token is
refused on every page here, as on the personal-link page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from authlib.integrations.requests_client import OAuth2Session
from flask import Response, current_app, g, redirect, request, session, url_for
from flask.blueprints import Blueprint, BlueprintSetupState
from flask_wtf.csrf import generate_csrf
from werkzeug.wrappers import Response as BaseResponse

from broker.api import pages
from broker.api.common import services
from broker.api.signin_session import end_session, oidc_settings, signed_in, start_session
from broker.config import ALGORITHMS, Approver, OidcSignIn, oidc_sign_in_problem
from broker.errors import (
    BadRequest,
    BrokerError,
    ConfigError,
    Forbidden,
    Unauthenticated,
    UpstreamUnavailable,
)
from broker.identity.fetch import SameOriginRedirects, secure_url
from broker.ids import looks_like_request_id
from broker.policy.requester import SignInIdentity

blueprint = Blueprint("oidc_signin", __name__)
pages.secure_pages(blueprint)  # the same locked-down pages as the personal-link page

CLIENT = "approver_oidc"  # authlib's name for the provider (its session keys carry it)
EXTENSION = "broker.oidc_signin"
DISCOVERY = "/.well-known/openid-configuration"
SCOPE = "openid email profile"
STATE_PREFIX = f"_state_{CLIENT}_"
# The discovery document's addresses the broker fetches from or sends browsers to.
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")
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
        client_cls=_SignInClient,
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


class _SameOriginSession(SameOriginRedirects, OAuth2Session):  # type: ignore[misc]
    """authlib's session, following redirects only within one origin (discovery, keys,
    token and userinfo answers cannot send the broker to another host)."""


class _SignInClient(FlaskOAuth2App):  # type: ignore[misc]
    client_cls = _SameOriginSession


def configured() -> bool:
    """True when this app offers OIDC sign-in."""
    return EXTENSION in current_app.extensions


def _client() -> Any:
    return current_app.extensions[EXTENSION]


def _redirect_uri() -> str:
    return f"{services().settings.public_url}/auth/callback"


@dataclass(frozen=True)
class SignInOffer:
    """The "Sign in" link of the request page, and why an earlier session ended."""

    url: str
    note: str


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
    if metadata.get("issuer") != oidc_settings().issuer:
        client.server_metadata.pop("_loaded_at", None)  # read it again next time
        raise UpstreamUnavailable(
            "the sign-in provider's discovery document names another issuer", "oidc"
        )
    for endpoint in ENDPOINTS:
        address = metadata.get(endpoint)
        if address is not None and not (isinstance(address, str) and secure_url(address)):
            client.server_metadata.pop("_loaded_at", None)
            raise UpstreamUnavailable(f"the sign-in provider's {endpoint} must use https", "oidc")
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
    if name == "email" and not _email_verified(source, claims):
        # Anyone can type an address into a profile: only a verified one names a person.
        raise Unauthenticated(
            f"the provider does not say the email address {value} is verified "
            "(email_verified must be true)"
        )
    return value


def _email_verified(source: Mapping[str, Any], claims: Mapping[str, Any]) -> bool:
    """``email_verified`` is true where the email came from (userinfo or the ID token)."""
    verified = source.get("email_verified", claims.get("email_verified"))
    return verified is True or verified == "true"  # some providers send it as a string


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
    pages.refuse_agents()
    who = signed_in()
    if who is None:
        offer = SignInOffer(
            url=url_for("oidc_signin.login", next=f"/requests/{request_id}"),
            note=g.get("sign_in_ended", ""),
        )
        return pages.render("request.html", request_id=request_id, sign_in=offer)
    model = pages.page_model(request_id, who.approver, signed_in=who.identity)
    return pages.show_request(
        model, "oidc", issuer=oidc_settings().issuer, here=f"/requests/{request_id}"
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
    pages.refuse_agents()
    pages.require_csrf("approve", "and try again")
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
    chosen, reason = pages.chosen_decision()
    view = services().approvals.decide(
        request_id, who.approver.name, chosen, "oidc", reason, signed_in=who.identity
    )
    return pages.show_outcome(view, chosen, who.approver, via="oidc", issuer=oidc_settings().issuer)


def login() -> BaseResponse:
    """Start signing in: send the browser to the provider.

    302 to the provider's authorization endpoint (code flow, PKCE S256, state, nonce); 400
    a ``next`` that is not a path on this site; 403 agent credentials; 503 the provider's
    discovery document cannot be read or names another issuer.
    """
    pages.refuse_agents()
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
    pages.refuse_agents()
    svc = services()
    now = svc.clock()
    client = _client()
    oidc = oidc_settings()
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
    verified_subject = claims.get("sub")
    if (
        not isinstance(verified_subject, str)
        or not verified_subject
        or len(verified_subject) > MAX_CLAIM
    ):
        raise _refuse_sign_in(Unauthenticated("the provider's ID token names no usable subject"))
    try:
        value = _claim_value(client, token, claims, oidc.approver_claim)
        approver = _approver_for(oidc.approver_claim, value)
    except (Unauthenticated, Forbidden) as e:
        raise _refuse_sign_in(e, f"oidc:{subject}", claim=oidc.approver_claim) from e
    previous = signed_in()  # an ended session (and the browser's binding) is dropped
    bound = session.get(pages.SESSION_APPROVER)
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
        end_session(previous)  # signing in again: copies of the old cookie die too
    start_session(approver, SignInIdentity(oidc.issuer, verified_subject), now)
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
    return pages.render(
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
    pages.refuse_agents()
    pages.require_csrf("sign_in", "and try again")
    target = _safe_next(request.form.get("next"))
    who = signed_in()
    if who is not None:
        end_session(who)
        services().audit.record(
            "sign_in", "signed_out", f"approver:{who.approver.name}", issuer=oidc_settings().issuer
        )
    session.clear()
    return pages.render("signed_out.html", back=target)
