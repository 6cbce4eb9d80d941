"""OIDC sign-in for approvers: a real provider over HTTP, the broker's checks, a real browser.

The provider (tests/fixtures/oidc.py) runs on localhost and speaks the protocol; the
broker's side is authlib's Flask client. Most tests drive the broker with Flask's test
client and follow the provider's redirects with ``requests``; the first one is a browser.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import flask
import pytest
import requests
from flask.testing import FlaskClient
from flask_wtf.csrf import generate_csrf
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from broker.app import create_app
from broker.config import Approver, load_settings
from broker.errors import ConfigError, InvalidFileError
from broker.services import build_services
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    approve_via_page,
    collect,
    csrf_from,
    link_token,
    open_request,
    status,
)
from tests.fixtures.broker import (
    APPROVERS,
    GROUPS,
    READ_PAYMENTS,
    Broker,
    FakeClock,
    FakeIssuer,
)
from tests.fixtures.broker import test_settings as broker_settings
from tests.fixtures.browser import LiveServer
from tests.fixtures.oidc import ALICE, OidcProvider, TokenCall, User, oidc_broker, oidc_settings
from tests.fixtures.secret_scan import Watcher

COOKIE = "broker-session"


def text(response: Any) -> str:
    return response.get_data(as_text=True)  # type: ignore[no-any-return]


def error_message(response: Any) -> str:
    match = re.search(r'id="error"[^>]*>(.*?)</p>', text(response), re.S)
    assert match, text(response)[:800]
    return html.unescape(match.group(1))


def start_sign_in(client: FlaskClient, next_path: str | None) -> Any:
    query = f"?next={quote(next_path, safe='')}" if next_path is not None else ""
    return client.get(f"/auth/login{query}")


def through_provider(login: Any) -> str:
    """Follow the broker's redirect to the provider; return the callback path and query."""
    assert login.status_code == 302, text(login)[:800]
    answer = requests.get(login.headers["Location"], allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/auth/callback"
    return f"{back.path}?{back.query}"


def sign_in(client: FlaskClient, next_path: str | None = None) -> Any:
    """The whole round trip; returns the broker's answer to the callback."""
    return client.get(through_provider(start_sign_in(client, next_path)))


def cookie(client: FlaskClient) -> str:
    found = client.get_cookie(COOKIE)
    assert found is not None
    return found.value


def audit(broker: Broker, action: str) -> list[Any]:
    return [r for r in broker.services.store.audit_records() if r.action == action]


@pytest.fixture()
def signin(tmp_path: Path, oidc_provider: OidcProvider) -> Iterator[Broker]:
    made = oidc_broker(tmp_path, oidc_provider)
    yield made
    made.services.close()


# -- a real browser -------------------------------------------------------------------


def wait_for(browser: WebDriver, element_id: str) -> str:
    element = WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )
    return str(element.text)


def test_a_browser_signs_in_as_alice_approves_and_the_agent_collects(
    tmp_path: Path,
    oidc_provider: OidcProvider,
    live_server: LiveServer,
    browser: WebDriver,
    secret_scan: Watcher,
) -> None:
    served = oidc_broker(tmp_path, oidc_provider, public_url=live_server.url)
    live_server.app = served.app
    try:
        read = served.post("/v1/credentials", READ_PAYMENTS)
        assert read.status_code == 200
        request_id = open_request(served, WRITE_PAYMENTS)
        browser.get(f"{live_server.url}/requests/{request_id}")
        wait_for(browser, "sign-in")
        assert browser.find_elements(By.ID, "justification") == []  # nothing before sign-in
        browser.find_element(By.ID, "sign-in").click()
        # broker -> provider (another site) -> broker's callback -> back to the request
        assert wait_for(browser, "justification") == WRITE_PAYMENTS["justification"]
        assert browser.current_url == f"{live_server.url}/requests/{request_id}"
        assert (
            "Signed in as Alice (alice@example.com)"
            in browser.find_element(By.ID, "signed-in").text
        )
        assert "adds s3:PutObject" in browser.find_element(By.ID, "adds").text
        [session] = [c for c in browser.get_cookies() if c["name"] == COOKIE]
        secret_scan.add_secret(session["value"], "a signed-in session cookie")
        assert session["httpOnly"] is True and session["sameSite"] == "Lax"
        [call] = oidc_provider.token_calls
        assert call == TokenCall("basic", True, None)  # client secret and PKCE verified
        browser.find_element(By.ID, "approve").click()
        wait_for(browser, "outcome")
        assert browser.find_element(By.ID, "outcome").get_attribute("data-status") == "approved"
        assert "Signed in as Alice" in browser.find_element(By.ID, "signed-in").text
        [approval] = served.services.store.approvals_for(request_id)
        assert (approval.approver, approval.via) == ("alice", "oidc")
        response = collect(served, request_id)
        assert response.status_code == 200, response.json
        assert [c.tier for c in served.issuers["aws"].calls] == ["read", "write"]
        # Back on the request page: decided, nothing left to click; then sign out.
        browser.get(f"{live_server.url}/requests/{request_id}")
        assert wait_for(browser, "note").startswith("This request is collected")
        assert browser.find_elements(By.ID, "approve") == []
        browser.find_element(By.ID, "sign-out-button").click()
        wait_for(browser, "signed-out")
        browser.find_element(By.ID, "back").click()
        wait_for(browser, "sign-in")
        assert browser.find_elements(By.ID, "justification") == []
    finally:
        served.services.close()


# -- the flow -------------------------------------------------------------------------


def test_without_oidc_configured_there_is_no_sign_in(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    page = text(broker.client.get(f"/requests/{request_id}"))
    assert "sign-in" not in page and "/auth/login" not in page
    for method, path in (("get", "/auth/login"), ("get", "/auth/callback")):
        assert getattr(broker.client, method)(path).status_code == 404
    assert broker.client.post(f"/requests/{request_id}").status_code == 405


def test_the_request_page_offers_sign_in_and_still_reveals_nothing(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    unknown = "req_" + "a" * 26
    nonce = re.compile(r'nonce="[^"]+"')
    real = nonce.sub("", text(signin.client.get(f"/requests/{request_id}")))
    fake = nonce.sub("", text(signin.client.get(f"/requests/{unknown}")))
    assert real.replace(request_id, "ID") == fake.replace(unknown, "ID")
    assert f'href="/auth/login?next=/requests/{request_id}"' in real
    for secret in ("payments-copilot", WRITE_PAYMENTS["justification"], "arn:aws"):
        assert secret not in real


def test_login_redirects_to_the_provider_with_pkce_state_and_nonce(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    login = start_sign_in(signin.client, "/requests/" + "req_" + "b" * 26)
    assert login.status_code == 302
    target = urlsplit(login.headers["Location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{oidc_provider.issuer}/authorize"
    params = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == oidc_provider.client_id
    assert params["redirect_uri"] == "http://127.0.0.1:8080/auth/callback"
    assert set(params["scope"].split()) >= {"openid", "email"}
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20
    assert "code_verifier" not in params and "client_secret" not in target.query
    # Each sign-in gets fresh values.
    again = parse_qs(urlsplit(start_sign_in(signin.client, None).headers["Location"]).query)
    assert again["state"][0] != params["state"] and again["nonce"][0] != params["nonce"]


def test_signing_in_shows_the_full_page_and_decides_via_oidc(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    back = sign_in(client, f"/requests/{request_id}")
    assert back.status_code == 303 and back.headers["Location"] == f"/requests/{request_id}"
    page = client.get(f"/requests/{request_id}")
    assert page.status_code == 200
    body = text(page)
    assert "Signed in as <strong>Alice</strong>\n(alice@example.com) through " in body
    assert 'id="approve"' in body and 'id="sign-out"' in body
    assert "This link works once" not in body
    [signed_in] = audit(signin, "sign_in")
    assert (signed_in.actor, signed_in.outcome) == ("approver:alice", "signed_in")
    assert signed_in.details["oidc_subject"] == ALICE.sub
    decided = client.post(
        f"/requests/{request_id}",
        data={"csrf_token": csrf_from(body), "decision": "approve", "reason": "checked"},
    )
    assert decided.status_code == 200 and 'data-status="approved"' in text(decided)
    [recorded] = [r for r in audit(signin, "approve") if r.outcome == "recorded"]
    assert recorded.actor == "approver:alice" and recorded.details["via"] == "oidc"
    assert ("view", "viewed") in [
        (r.action, r.outcome) for r in signin.services.store.audit_records(request_id=request_id)
    ]
    assert collect(signin, request_id).status_code == 200


def test_without_next_the_callback_shows_who_signed_in(signin: Broker) -> None:
    back = sign_in(signin.client)
    assert back.status_code == 200
    assert "Signed in as <strong>Alice</strong>" in text(back)


def test_sub_can_name_the_approver(tmp_path: Path, oidc_provider: OidcProvider) -> None:
    approvers = {
        **APPROVERS,
        "alice": Approver(name="alice", display_name="Alice", oidc_subject=ALICE.sub),
    }
    made = oidc_broker(tmp_path, oidc_provider, oidc={"approver_claim": "sub"}, approvers=approvers)
    try:
        request_id = open_request(made, WRITE_PAYMENTS)
        client = made.client
        assert sign_in(client, f"/requests/{request_id}").status_code == 303
        assert "Signed in as <strong>Alice</strong>" in text(client.get(f"/requests/{request_id}"))
        # Another subject with alice's email is nobody: the subject is what counts.
        oidc_provider.user = User(sub="00u-mallory", email="alice@example.com")
        refused = sign_in(made.app.test_client())
        assert refused.status_code == 403
        assert "00u-mallory is not a configured approver" in error_message(refused)
    finally:
        made.services.close()


def test_the_claim_may_come_from_userinfo(signin: Broker, oidc_provider: OidcProvider) -> None:
    oidc_provider.misbehave("claims_only_in_userinfo")
    assert sign_in(signin.client).status_code == 200
    assert oidc_provider.userinfo_calls == 1
    oidc_provider.misbehave("claims_only_in_userinfo", "userinfo_other_subject")
    refused = sign_in(signin.app.test_client())
    assert refused.status_code == 401
    assert "userinfo is about another subject" in error_message(refused)


# -- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "user",
    [
        User(sub="00u-mallory", email="mallory@example.com"),
        User(sub="00u-nomail", email=None),
        User(sub="00u-alice2", email="alice@example.com", email_verified=False),
        User(sub="00u-alice3", email="alice@example.com", email_verified=None),
    ],
    ids=["unknown", "no-email", "unverified-email", "email-verified-missing"],
)
def test_an_unknown_or_unproven_user_is_refused_and_audited(
    signin: Broker, oidc_provider: OidcProvider, user: User
) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    oidc_provider.user = user
    client = signin.client
    refused = sign_in(client, f"/requests/{request_id}")
    assert refused.status_code in (401, 403) and refused.mimetype == "text/html"
    [record] = audit(signin, "sign_in")
    assert record.outcome == "refused" and record.actor == f"oidc:{user.sub}"
    assert record.reason == error_message(refused)
    page = text(client.get(f"/requests/{request_id}"))
    assert 'id="sign-in"' in page and WRITE_PAYMENTS["justification"] not in page
    assert signin.services.store.approvals_for(request_id) == []


def test_the_unknown_user_gets_a_403_naming_them(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    oidc_provider.user = User(sub="00u-mallory", email="mallory@example.com")
    refused = sign_in(signin.client)
    assert refused.status_code == 403
    assert error_message(refused) == "mallory@example.com is not a configured approver"


@pytest.mark.parametrize(
    ("fault", "why"),
    [
        ("wrong_audience", "'aud' claim is invalid"),
        ("audience_elsewhere_with_azp", "'aud' claim is invalid"),
        ("wrong_issuer", "'iss' claim is invalid"),
        ("wrong_nonce", "'nonce' claim is invalid"),
        ("no_nonce", "'nonce' claim is missing"),
        ("expired", "it has expired"),
        ("foreign_key", "bad signature"),
        ("symmetric", "ID token was refused"),
        ("no_id_token", "returned no ID token"),
    ],
)
def test_an_invalid_id_token_is_refused(
    signin: Broker, oidc_provider: OidcProvider, fault: str, why: str
) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    oidc_provider.misbehave(fault)
    client = signin.client
    refused = sign_in(client, f"/requests/{request_id}")
    assert refused.status_code == 401, text(refused)[:800]
    assert why in error_message(refused)
    assert oidc_provider.token_calls[-1].error is None  # the provider did answer
    [record] = audit(signin, "sign_in")
    assert record.outcome == "refused" and why in record.reason
    assert 'id="sign-in"' in text(client.get(f"/requests/{request_id}"))  # not signed in
    # The same browser signs in once the provider behaves.
    oidc_provider.misbehave()
    assert sign_in(client, f"/requests/{request_id}").status_code == 303


def test_the_provider_authenticates_the_broker_by_its_secret(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    wrong = oidc_broker(tmp_path, oidc_provider, oidc={"client_secret": "not-the-secret-at-all"})
    try:
        refused = sign_in(wrong.client)
        assert refused.status_code == 401
        assert "the provider refused the code (invalid_client)" in error_message(refused)
        assert oidc_provider.token_calls[-1].error == "invalid_client"
    finally:
        wrong.services.close()


def test_a_callback_is_used_once(signin: Broker, oidc_provider: OidcProvider) -> None:
    client = signin.client
    login = start_sign_in(client, None)
    before = cookie(client)  # the session holding this sign-in's state and PKCE verifier
    callback = through_provider(login)
    assert client.get(callback).status_code == 200
    # Replayed with the session as it was before (a copied cookie): refused by the broker
    # before the provider sees the code again.
    replay = signin.app.test_client()
    replay.set_cookie(COOKIE, before)
    calls = len(oidc_provider.token_calls)
    refused = replay.get(callback)
    assert refused.status_code == 401 and "already completed" in error_message(refused)
    assert len(oidc_provider.token_calls) == calls
    # And in the same browser there is no sign-in in progress any more.
    assert client.get(callback).status_code == 400


def test_a_callback_without_a_sign_in_in_progress_is_refused(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    callback = through_provider(start_sign_in(signin.client, None))
    stranger = signin.app.test_client()  # login CSRF: the victim's browser never started it
    assert stranger.get(callback).status_code == 400
    assert stranger.get("/auth/callback").status_code == 400
    assert stranger.get("/auth/callback?state=forged&code=x").status_code == 400
    assert oidc_provider.token_calls == []


def test_a_provider_error_or_a_slow_sign_in_is_refused(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    oidc_provider.user = None  # the user cancelled at the provider
    refused = sign_in(signin.client)
    assert refused.status_code == 401 and "(access_denied)" in error_message(refused)
    oidc_provider.user = ALICE
    client = signin.client
    callback = through_provider(start_sign_in(client, None))
    signin.clock.advance(601)
    slow = client.get(callback)
    assert slow.status_code == 401 and "took too long" in error_message(slow)


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/requests/x",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "evil.example",
        "/requests/x\r\nSet-Cookie: a=b",
        "/requests/\tx",
        " /requests/x",
        "/requests/é",
        "/" + "a" * 600,
    ],
)
def test_an_open_redirect_in_next_is_refused(
    signin: Broker, oidc_provider: OidcProvider, target: str
) -> None:
    refused = start_sign_in(signin.client, target)
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert "next must be a path on this site" in error_message(refused)
    assert oidc_provider.authorize_calls == []


def test_next_may_be_any_path_on_this_site(signin: Broker) -> None:
    for target in ("/requests/req_" + "c" * 26, "/approve/x?y=1#z", "/"):
        back = sign_in(signin.app.test_client(), target)
        assert back.status_code == 303 and back.headers["Location"] == target


def test_a_post_without_a_valid_csrf_token_is_refused(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    sign_in(client)
    csrf = csrf_from(text(client.get(f"/requests/{request_id}")))
    stranger = signin.app.test_client()
    sign_in(stranger)  # alice, in another browser: its own session and CSRF secret
    for attempt, data in (
        (client, {"decision": "approve"}),
        (client, {"decision": "approve", "csrf_token": "forged"}),
        (client, {"decision": "approve", "csrf_token": csrf[:-2] + "xx"}),
        (stranger, {"decision": "approve", "csrf_token": csrf}),
    ):
        refused = attempt.post(f"/requests/{request_id}", data=data)
        assert refused.status_code == 403 and "security token" in error_message(refused)
    assert status(signin, request_id)["approvals_received"] == 0
    assert client.post("/auth/logout", data={}).status_code == 403  # sign-out too
    ok = client.post(f"/requests/{request_id}", data={"decision": "approve", "csrf_token": csrf})
    assert ok.status_code == 200


def test_a_decision_needs_a_session_and_a_known_decision(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    csrf = csrf_from(text(client.get(f"/approve/{link_token(signin, request_id, 'alice')}")))
    # A link's session (CSRF secret, bound to alice) is not a sign-in.
    refused = client.post(
        f"/requests/{request_id}", data={"decision": "approve", "csrf_token": csrf}
    )
    assert refused.status_code == 401 and "not signed in" in error_message(refused)
    assert 'id="justification"' not in text(client.get(f"/requests/{request_id}"))
    sign_in(client)
    csrf = csrf_from(text(client.get(f"/requests/{request_id}")))
    for decision in ("", "APPROVE", "escalate"):
        bad = client.post(
            f"/requests/{request_id}", data={"decision": decision, "csrf_token": csrf}
        )
        assert bad.status_code == 400
    assert (
        client.post(
            "/requests/req_nope", data={"decision": "approve", "csrf_token": csrf}
        ).status_code
        == 400
    )
    missing = "req_" + "z" * 26
    assert client.get(f"/requests/{missing}").status_code == 404
    assert (
        client.post(
            f"/requests/{missing}", data={"decision": "approve", "csrf_token": csrf}
        ).status_code
        == 404
    )
    assert status(signin, request_id)["approvals_received"] == 0


def test_an_agent_token_never_works_here(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    sign_in(client)
    csrf = csrf_from(text(client.get(f"/requests/{request_id}")))
    agent = signin.headers()
    for response in (
        client.get(f"/requests/{request_id}", headers=agent),
        client.post(
            f"/requests/{request_id}",
            data={"decision": "approve", "csrf_token": csrf},
            headers=agent,
        ),
        client.get("/auth/login", headers=agent),
        client.get("/auth/callback?state=x&code=y", headers=agent),
        client.post("/auth/logout", data={"csrf_token": csrf}, headers=agent),
    ):
        assert response.status_code == 403
        assert "agent credentials cannot approve" in error_message(response)
    assert status(signin, request_id)["approvals_received"] == 0


def test_the_requester_cannot_approve_its_own_request(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    """An approver whose OIDC subject is the requesting agent's signs in, and is refused."""
    approvers = {
        **APPROVERS,
        "mallory": Approver(name="mallory", oidc_subject="agent:payments-copilot"),
    }
    made = oidc_broker(
        tmp_path,
        oidc_provider,
        oidc={"approver_claim": "sub"},
        approvers=approvers,
        groups={**GROUPS, "payments-leads": ("alice", "mallory")},
    )
    try:
        request_id = open_request(made, WRITE_PAYMENTS)
        oidc_provider.user = User(sub="agent:payments-copilot")
        client = made.client
        signed_in = sign_in(client)
        assert signed_in.status_code == 200
        page = client.get(f"/requests/{request_id}")  # the requester never sees Approve
        assert page.status_code == 403 and 'id="approve"' not in text(page)
        assert WRITE_PAYMENTS["justification"] not in text(page)
        csrf = csrf_from(text(signed_in))
        refused = client.post(
            f"/requests/{request_id}", data={"decision": "approve", "csrf_token": csrf}
        )
        assert refused.status_code == 403
        assert "cannot approve its own request" in error_message(refused)
        assert status(made, request_id)["approvals_received"] == 0
    finally:
        made.services.close()


def test_an_approver_not_listed_for_the_tier_sees_nothing_and_cannot_decide(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    write = open_request(signin, WRITE_PAYMENTS)
    delete = open_request(signin, DELETE_LEDGER, agent=LEDGER_AGENT)
    oidc_provider.user = User(sub="00u-carol", email="carol@example.com")
    client = signin.client
    sign_in(client)
    shown = client.get(f"/requests/{write}")
    page = text(shown)
    assert shown.status_code == 403
    assert "carol is not an approver for tier write of payments" in page
    assert 'id="decide"' not in page and WRITE_PAYMENTS["justification"] not in page
    csrf = csrf_from(text(client.get(f"/requests/{delete}")))  # a page she may act on
    refused = client.post(f"/requests/{write}", data={"decision": "approve", "csrf_token": csrf})
    assert refused.status_code == 403
    assert "carol is not an approver for tier write of payments" in error_message(refused)
    assert status(signin, write)["approvals_received"] == 0
    # Where she is listed, she counts once, however often she clicks.
    ok = client.post(f"/requests/{delete}", data={"decision": "approve", "csrf_token": csrf})
    assert ok.status_code == 200
    again = client.post(f"/requests/{delete}", data={"decision": "approve", "csrf_token": csrf})
    assert again.status_code == 409
    assert error_message(again).startswith("already approved, not counted again (carol")
    assert status(signin, delete, LEDGER_AGENT)["approvals_received"] == 1


def test_one_approver_per_browser(signin: Broker, oidc_provider: OidcProvider) -> None:
    request_id = open_request(signin, DELETE_LEDGER, agent=LEDGER_AGENT)
    client = signin.client
    oidc_provider.user = User(sub="00u-carol", email="carol@example.com")
    sign_in(client)
    daves = link_token(signin, request_id, "dave")
    refused = client.get(f"/approve/{daves}")
    assert refused.status_code == 403 and "signed in as carol" in error_message(refused)
    # A browser that acted through bob's link (a write) cannot sign in as carol either.
    write = open_request(signin, WRITE_PAYMENTS)
    other = signin.app.test_client()
    assert approve_via_page(other, link_token(signin, write, "bob")).status_code == 200
    refused = sign_in(other)
    assert refused.status_code == 403 and "this browser acted as bob" in error_message(refused)


# -- sessions -------------------------------------------------------------------------


def test_under_https_the_session_cookie_is_secure_and_host_only(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    made = oidc_broker(tmp_path, oidc_provider, public_url="https://broker.example.com")
    try:
        client = made.client
        https = "https://broker.example.com"
        login = client.get("/auth/login", base_url=https)
        assert parse_qs(urlsplit(login.headers["Location"]).query)["redirect_uri"] == [
            f"{https}/auth/callback"
        ]
        back = client.get(through_provider(login), base_url=https)
        assert back.status_code == 200, text(back)[:800]
        cookie_header = back.headers["Set-Cookie"]
        assert cookie_header.startswith("__Host-broker-session=")
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag in cookie_header
        assert "Domain=" not in cookie_header
    finally:
        made.services.close()


def test_sign_in_pages_are_locked_down(signin: Broker) -> None:
    client = signin.client
    for response in (
        start_sign_in(client, "https://evil.example"),
        client.get("/auth/callback"),
        sign_in(client),
        client.post("/auth/logout", data={}),
    ):
        assert response.mimetype == "text/html"
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp
        assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_signing_in_starts_a_new_session(signin: Broker) -> None:
    client = signin.client
    request_id = open_request(signin, WRITE_PAYMENTS)
    link_csrf = csrf_from(text(client.get(f"/approve/{link_token(signin, request_id, 'alice')}")))
    planted = cookie(client)
    assert sign_in(client).status_code == 200
    assert cookie(client) != planted
    # The CSRF secret of the earlier session is gone: its token no longer works.
    stale = client.post(
        f"/requests/{request_id}", data={"decision": "approve", "csrf_token": link_csrf}
    )
    assert stale.status_code == 403
    # And the cookie from before the sign-in signs nobody in.
    before = signin.app.test_client()
    before.set_cookie(COOKIE, planted)
    assert 'id="sign-in"' in text(before.get(f"/requests/{request_id}"))
    # Signing in again ends the first signed-in session: a copy of its cookie is refused.
    first = cookie(client)
    copy = signin.app.test_client()
    copy.set_cookie(COOKIE, first)
    assert 'id="justification"' in text(copy.get(f"/requests/{request_id}"))
    assert sign_in(client).status_code == 200
    copy.set_cookie(COOKIE, first)
    assert "this session was signed out" in text(copy.get(f"/requests/{request_id}"))
    assert 'id="justification"' in text(client.get(f"/requests/{request_id}"))


def test_signing_out_ends_the_session_and_every_copy(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    sign_in(client)
    page = text(client.get(f"/requests/{request_id}"))
    copied = cookie(client)
    out = client.post(
        "/auth/logout", data={"csrf_token": csrf_from(page), "next": f"/requests/{request_id}"}
    )
    assert out.status_code == 200 and 'id="signed-out"' in text(out)
    assert f'href="/requests/{request_id}"' in text(out)
    assert 'id="sign-in"' in text(client.get(f"/requests/{request_id}"))
    [record] = [r for r in audit(signin, "sign_in") if r.outcome == "signed_out"]
    assert record.actor == "approver:alice"
    # A copy of the signed-in cookie is signed out too (on every replica: it is in the store).
    thief = signin.app.test_client()
    thief.set_cookie(COOKIE, copied)
    again = thief.get(f"/requests/{request_id}")
    assert 'id="sign-in"' in text(again) and "this session was signed out" in text(again)
    thief.set_cookie(COOKIE, copied)
    refused = thief.post(
        f"/requests/{request_id}", data={"decision": "approve", "csrf_token": csrf_from(page)}
    )
    assert refused.status_code == 401 and "signed out" in error_message(refused)
    assert status(signin, request_id)["approvals_received"] == 0


def test_a_session_ends_after_30_minutes_idle(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    sign_in(client)
    signin.clock.advance(29 * 60)
    assert 'id="justification"' in text(client.get(f"/requests/{request_id}"))  # still alive
    signin.clock.advance(29 * 60)  # 58 min since sign-in, 29 min idle: still alive
    page = text(client.get(f"/requests/{request_id}"))
    assert 'id="justification"' in page
    signin.clock.advance(30 * 60)
    refused = client.post(
        f"/requests/{request_id}", data={"decision": "approve", "csrf_token": csrf_from(page)}
    )
    assert refused.status_code == 401 and "inactive for 30 min" in error_message(refused)
    assert 'id="sign-in"' in text(client.get(f"/requests/{request_id}"))
    assert status(signin, request_id)["approvals_received"] == 0
    signin.clock.advance(1)
    sign_in(client)  # a fresh sign-in, and the page is back
    assert 'id="justification"' in text(client.get(f"/requests/{request_id}"))


def test_a_session_ends_after_8_hours_however_busy(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    sign_in(client)
    for _ in range(19):  # every 25 minutes for 7 h 55 min
        signin.clock.advance(25 * 60)
        assert 'id="justification"' in text(client.get(f"/requests/{request_id}"))
    signin.clock.advance(5 * 60)
    ended = text(client.get(f"/requests/{request_id}"))
    assert 'id="sign-in"' in ended and "older than 8 h" in ended


def test_session_lifetimes_come_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(
        "approvals:\n  oidc:\n    issuer: https://login.example.com\n"
        "    client_id: broker\n    approver_claim: sub\n"
        "    session_idle: 10m\n    session_max: 2h\n"
    )
    oidc = load_settings(path, environ={"BROKER_OIDC_CLIENT_SECRET": "s" * 32}).approvals.oidc
    assert oidc is not None
    assert (oidc.session_idle_seconds, oidc.session_max_seconds) == (600, 7200)
    assert (oidc.approver_claim, oidc.client_secret) == ("sub", "s" * 32)


def test_an_approver_removed_from_the_config_is_signed_out(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    first = oidc_broker(tmp_path, oidc_provider)
    request_id = open_request(first, WRITE_PAYMENTS)
    client = first.client
    sign_in(client)
    signed_in = cookie(client)
    first.services.close()
    later = oidc_broker(
        tmp_path,
        oidc_provider,
        approvers={k: v for k, v in APPROVERS.items() if k != "alice"},
        groups={**GROUPS, "payments-leads": ("bob",)},
    )
    try:
        browser = later.app.test_client()
        browser.set_cookie(COOKIE, signed_in)
        page = text(browser.get(f"/requests/{request_id}"))
        assert 'id="sign-in"' in page and "no longer a configured approver" in page
    finally:
        later.services.close()


# -- configuration and the provider ---------------------------------------------------


def test_a_misconfigured_sign_in_refuses_to_start(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    for name, changes, message in (
        ("no-secret", {"client_secret": None}, "BROKER_OIDC_CLIENT_SECRET"),
        ("plain-http", {"issuer": "http://login.example.com"}, "must use https"),
    ):
        clock = FakeClock()
        oidc = oidc_settings(oidc_provider, **changes)
        settings = broker_settings(tmp_path / name, approvals=oidc)
        issuers = {b: FakeIssuer(b, clock) for b in ("aws", "vault", "database")}
        services = build_services(settings, clock=clock, issuers=issuers)
        try:
            with pytest.raises(ConfigError, match=message):
                create_app(services=services)
        finally:
            services.close()


def test_a_provider_naming_another_issuer_or_unreachable_is_a_503(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    made = oidc_broker(tmp_path, oidc_provider)
    try:
        oidc_provider.discovery_issuer = "https://evil.example"
        refused = start_sign_in(made.client, None)
        assert refused.status_code == 503 and "names another issuer" in error_message(refused)
        oidc_provider.discovery_issuer = None  # read again: it is not cached when wrong
        assert start_sign_in(made.client, None).status_code == 302
    finally:
        made.services.close()
    gone = oidc_broker(tmp_path / "gone", oidc_provider, oidc={"issuer": "http://127.0.0.1:9"})
    try:
        refused = start_sign_in(gone.client, None)
        assert refused.status_code == 503 and "cannot be reached" in error_message(refused)
    finally:
        gone.services.close()


def test_nothing_secret_reaches_logs_or_audit(
    signin: Broker, oidc_provider: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    request_id = open_request(signin, WRITE_PAYMENTS)
    client = signin.client
    login = start_sign_in(client, f"/requests/{request_id}")
    verifier_cookie = cookie(client)
    callback = through_provider(login)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    client.get(callback)
    page = text(client.get(f"/requests/{request_id}"))
    session_cookie = cookie(client)
    client.post(
        f"/requests/{request_id}", data={"decision": "approve", "csrf_token": csrf_from(page)}
    )
    client.get(callback)  # replayed
    oidc_provider.misbehave("wrong_nonce")
    sign_in(signin.app.test_client())
    secrets_ = {
        "client secret": oidc_provider.client_secret,
        "code": code,
        "session cookie": session_cookie,
        "sign-in cookie": verifier_cookie,
    }
    trail = "\n".join(repr(r) for r in signin.services.store.audit_records())
    assert "sign_in" in trail and "approve" in trail  # the texts searched are not empty
    for what, value in secrets_.items():
        assert value not in trail, what
        assert value not in caplog.text, what
    # The tokens the provider issued are registered with the suite's secret scan as well.


def test_an_id_token_without_email_verified_signs_nobody_in(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    """Anyone can type alice's address into a profile: unless the provider says it is
    verified, it names nobody (a missing claim is not a yes)."""
    oidc_provider.user = User(sub="00u-typed-it", email="alice@example.com", email_verified=None)
    refused = sign_in(signin.client)
    assert refused.status_code == 401
    assert error_message(refused) == (
        "the provider does not say the email address alice@example.com is verified "
        "(email_verified must be true)"
    )


def test_a_discovery_document_naming_http_keys_signs_nobody_in(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    oidc_provider.misbehave("jwks_over_http")
    refused = signin.client.get("/auth/login")
    assert refused.status_code == 503
    assert error_message(refused) == "the sign-in provider's jwks_uri must use https"


def test_keys_are_not_fetched_from_another_origin(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    oidc_provider.misbehave("jwks_redirects_elsewhere")
    refused = sign_in(signin.client)
    assert refused.status_code == 503, error_message(refused)
    assert not [r for r in audit(signin, "sign_in") if r.outcome == "signed_in"]


def test_the_approver_claim_is_one_users_cannot_edit(tmp_path: Path) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(
        "approvals:\n  oidc:\n    issuer: https://login.example.com\n"
        "    client_id: broker\n    approver_claim: preferred_username\n"
    )
    with pytest.raises(InvalidFileError, match="approver_claim 'preferred_username' is invalid"):
        load_settings(config, environ={"BROKER_OIDC_CLIENT_SECRET": "s" * 32})


# -- a delete needs people, not links ---------------------------------------------------


def _csrf_for(made: Broker, client: FlaskClient) -> str:
    """A valid CSRF token in ``client``'s session, without any page binding it to anyone
    (the form a leaked link's holder could forge)."""
    with made.app.test_request_context("/approve/x"):
        token = generate_csrf()
        secret = flask.session["csrf_token"]
    with client.session_transaction("/approve/x") as session:
        session["csrf_token"] = secret
    return str(token)


def test_a_delete_link_works_only_for_its_approver_signed_in(
    signin: Broker, oidc_provider: OidcProvider
) -> None:
    """Possession of carol's link is not enough: whoever holds it sees nothing and decides
    nothing until they sign in as carol."""
    request_id = open_request(signin, DELETE_LEDGER, agent=LEDGER_AGENT)
    token = link_token(signin, request_id, "carol")
    client = signin.client
    shown = client.get(f"/approve/{token}")
    page = text(shown)
    assert shown.status_code == 401 and "Sign in as Carol to use this link" in page
    assert DELETE_LEDGER["justification"] not in page and 'id="decide"' not in page
    assert f"next=%2Fapprove%2F{token}" in page or f"next=/approve/{token}" in page
    forged = client.post(
        f"/approve/{token}", data={"csrf_token": _csrf_for(signin, client), "decision": "approve"}
    )
    assert forged.status_code == 401
    assert error_message(forged).startswith("a delete needs carol signed in")
    assert status(signin, request_id, LEDGER_AGENT)["approvals_received"] == 0
    assert not signin.services.store.token_used(signin.services.links.parse(token).jti)
    # Signed in as dave, the link of carol is still not his.
    oidc_provider.user = User(sub="00u-dave", email="dave@example.com")
    other = signin.app.test_client()
    sign_in(other)
    refused = other.get(f"/approve/{token}")
    assert refused.status_code == 403 and "signed in as dave" in error_message(refused)
    # carol signs in through the link's page, comes back to it, and decides.
    oidc_provider.user = User(sub="00u-carol", email="carol@example.com")
    back = sign_in(client, f"/approve/{token}")
    assert back.status_code == 303 and back.headers["Location"].endswith(f"/approve/{token}")
    assert approve_via_page(client, token).status_code == 200
    assert status(signin, request_id, LEDGER_AGENT)["approvals_received"] == 1


def test_a_write_link_still_works_alone(signin: Broker) -> None:
    request_id = open_request(signin, WRITE_PAYMENTS)
    assert approve_via_page(signin.client, link_token(signin, request_id, "bob")).status_code == 200


def test_without_sign_in_the_delete_page_says_the_link_is_the_only_proof(broker: Broker) -> None:
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    page = text(broker.client.get(f"/approve/{link_token(broker, request_id, 'carol')}"))
    assert 'id="possession-only"' in page and "This link alone approves a delete." in page
    write = open_request(broker, WRITE_PAYMENTS)
    assert 'id="possession-only"' not in text(
        broker.client.get(f"/approve/{link_token(broker, write, 'bob')}")
    )
