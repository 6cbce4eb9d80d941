"""The approval page: what it shows, what it refuses, and a real browser using it."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from broker.config import Approver
from broker.errors import Forbidden
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    approve_via_page,
    audit_trail,
    collect,
    csrf_from,
    link_token,
    open_request,
    status,
)
from tests.fixtures.broker import APPROVERS, GROUPS, READ_PAYMENTS, Broker, make_broker
from tests.fixtures.browser import LiveServer

INJECTION = (
    '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    "<b>bold</b> <a href='https://evil.example'>runbook</a> *mrkdwn* <!channel> & done"
)


def page_text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined,no-any-return]


def error_message(response: object) -> str:
    match = re.search(r'id="error"[^>]*>(.*?)</p>', page_text(response), re.S)
    assert match, page_text(response)[:500]
    return html.unescape(match.group(1))


# -- reading ----------------------------------------------------------------------------


def test_the_page_shows_everything_an_approver_needs(broker: Broker) -> None:
    broker.post("/v1/credentials", READ_PAYMENTS)
    earlier = open_request(broker, WRITE_PAYMENTS)
    broker.services.approvals.decide(earlier, "bob", "deny", "link", "wrong bucket")
    request_id = open_request(broker, {**WRITE_PAYMENTS, "justification": "second attempt"})
    response = broker.client.get(f"/approve/{link_token(broker, request_id, 'alice')}")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = page_text(response)
    for expected in (
        "Signed in as <strong>Alice</strong>",
        "alice@example.com",
        "agent:payments-copilot (issuer local)",
        "iss = broker-local",
        "<td>payments</td>",
        "<td>prod</td>",
        "<td>us-east-1</td>",
        'id="tier">write<',
        "second attempt",
        WRITE_PAYMENTS["resources"][0],
        "adds s3:PutObject on arn:aws:s3:::payments-prod-invoices/2026/11/* in us-east-1",
        "30 min, counted from when the agent collects",
        "0 of 1 received;\n<strong>1</strong> still needed",
        "Approvers of this tier: alice, bob.",
        "denied by bob: wrong bucket",
        "issue read on payments/prod",
        'id="approve"',
        'id="deny"',
    ):
        assert expected in html, expected
    assert "adds s3:GetObject" not in html  # read already allows it


def test_opening_the_link_changes_nothing(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "alice")
    for _ in range(3):  # a mail scanner, a chat unfurler, the approver
        assert broker.app.test_client().get(f"/approve/{token}").status_code == 200
    assert status(broker, request_id)["status"] == "pending"
    assert broker.services.store.approvals_for(request_id) == []
    assert audit_trail(broker, request_id).count(("view", "viewed")) == 3
    # ...and the link still decides afterwards.
    assert approve_via_page(broker.client, token).status_code == 200


def test_pages_carry_a_strict_content_security_policy(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    for response in (
        broker.client.get(f"/approve/{link_token(broker, request_id, 'alice')}"),
        broker.client.get("/approve/not-a-token"),
        broker.client.get(f"/requests/{request_id}"),
    ):
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp and "script-src" not in csp  # no script at all
        assert "unsafe-inline" not in csp
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce and f'nonce="{nonce.group(1)}"' in page_text(response)
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_session_cookie_is_locked_down(broker: Broker, tmp_path: Path) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    cookie = broker.client.get(f"/approve/{link_token(broker, request_id, 'alice')}").headers[
        "Set-Cookie"
    ]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = make_broker(tmp_path / "https", public_url="https://broker.example.com")
    request_id = open_request(secure, WRITE_PAYMENTS)
    cookie = secure.client.get(f"/approve/{link_token(secure, request_id, 'alice')}").headers[
        "Set-Cookie"
    ]
    assert cookie.startswith("__Host-broker-session=") and "Secure" in cookie
    secure.services.close()


def test_injected_html_is_rendered_inert(broker: Broker) -> None:
    request_id = open_request(broker, {**WRITE_PAYMENTS, "justification": INJECTION})
    html = page_text(broker.client.get(f"/approve/{link_token(broker, request_id, 'alice')}"))
    assert "<script" not in html and "<img" not in html and "<a " not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html


def test_the_request_page_reveals_nothing(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    unknown = "req_" + "a" * 26
    nonce = re.compile(r'nonce="[^"]+"')
    real = nonce.sub("", page_text(broker.client.get(f"/requests/{request_id}")))
    fake = nonce.sub("", page_text(broker.client.get(f"/requests/{unknown}")))
    assert real.replace(request_id, "ID") == fake.replace(unknown, "ID")
    for secret in ("payments-copilot", WRITE_PAYMENTS["justification"], "arn:aws"):
        assert secret not in real
    assert "Review" in real and "broker approvals link" in real
    malformed = broker.client.get("/requests/<script>")
    assert malformed.status_code == 400 and malformed.mimetype == "text/html"


# -- deciding ---------------------------------------------------------------------------


def test_approving_through_the_page_works_once(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "alice")
    client = broker.client
    form = csrf_from(page_text(client.get(f"/approve/{token}")))
    first = client.post(f"/approve/{token}", data={"csrf_token": form, "decision": "approve"})
    assert first.status_code == 200
    assert 'data-status="approved"' in page_text(first)
    replay = client.post(f"/approve/{token}", data={"csrf_token": form, "decision": "approve"})
    assert replay.status_code == 410
    assert error_message(replay).startswith("already approved, not counted again (alice")
    assert error_message(replay).endswith("this link was already used")
    assert len(broker.services.store.approvals_for(request_id)) == 1
    assert collect(broker, request_id).status_code == 200


def test_a_double_click_counts_one_approval(broker: Broker) -> None:
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    token = link_token(broker, request_id, "carol")
    client = broker.client
    form = {
        "csrf_token": csrf_from(page_text(client.get(f"/approve/{token}"))),
        "decision": "approve",
    }
    statuses = [client.post(f"/approve/{token}", data=form).status_code for _ in range(2)]
    assert statuses == [200, 410]
    assert status(broker, request_id, LEDGER_AGENT)["approvals_received"] == 1


def test_a_second_link_of_the_same_approver_offers_nothing_more(broker: Broker) -> None:
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    client = broker.client
    assert approve_via_page(client, link_token(broker, request_id, "carol")).status_code == 200
    again = page_text(client.get(f"/approve/{link_token(broker, request_id, 'carol')}"))
    assert "You already approved it" in again and 'id="decide"' not in again
    assert status(broker, request_id, LEDGER_AGENT)["approvals_received"] == 1


def test_denying_through_the_page_records_the_reason_escaped(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "bob")
    response = approve_via_page(broker.client, token, "deny", "<b>no</b>: wrong batch")
    assert response.status_code == 200
    assert "&lt;b&gt;no&lt;/b&gt;: wrong batch" in page_text(response)
    assert (
        broker.services.approvals.get(request_id).reason == "denied by bob: <b>no</b>: wrong batch"
    )


def test_a_post_without_a_valid_csrf_token_is_refused(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "alice")
    client = broker.client
    csrf = csrf_from(page_text(client.get(f"/approve/{token}")))
    stranger = broker.app.test_client()  # another browser: its session holds no CSRF secret
    for attempt_client, data in (
        (client, {"decision": "approve"}),
        (client, {"decision": "approve", "csrf_token": "forged"}),
        (client, {"decision": "approve", "csrf_token": csrf[:-2] + "xx"}),
        (stranger, {"decision": "approve", "csrf_token": csrf}),
    ):
        refused = attempt_client.post(f"/approve/{token}", data=data)
        assert refused.status_code == 403
        assert "security token" in error_message(refused)
    assert status(broker, request_id)["approvals_received"] == 0
    # Refusals consumed nothing: the approver's own form still works.
    ok = client.post(f"/approve/{token}", data={"decision": "approve", "csrf_token": csrf})
    assert ok.status_code == 200


def test_a_decision_must_be_approve_or_deny(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "alice")
    client = broker.client
    csrf = csrf_from(page_text(client.get(f"/approve/{token}")))
    for decision in ("", "APPROVE", "approve ", "escalate"):
        response = client.post(f"/approve/{token}", data={"csrf_token": csrf, "decision": decision})
        assert response.status_code == 400
    assert approve_via_page(client, token).status_code == 200  # link not consumed


@pytest.mark.parametrize("method", ["get", "post"])
def test_forged_malformed_and_expired_links_are_refused(broker: Broker, method: str) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    good = link_token(broker, request_id, "alice")
    header, _, signature = good.split(".")
    bob = link_token(broker, request_id, "bob").split(".")[1]
    expired = broker.services.links.mint(request_id, "alice", now=broker.clock() - 86401)
    cases = {
        "forged": f"{header}.{bob}.{signature}",
        "garbage": "x" * 40,
        "huge": "a." * 2000,
        "expired": expired,
        "agent token": broker.token(),
    }
    for name, token in cases.items():
        response = getattr(broker.client, method)(f"/approve/{token}", data={"decision": "approve"})
        assert response.status_code in (401, 403), (name, response.status_code)
        assert response.mimetype == "text/html"
    assert "expired" in error_message(broker.client.get(f"/approve/{expired}"))
    assert status(broker, request_id)["approvals_received"] == 0


def test_an_agent_token_never_approves(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "alice")
    client = broker.client
    csrf = csrf_from(page_text(client.get(f"/approve/{token}")))
    response = client.post(
        f"/approve/{token}",
        data={"csrf_token": csrf, "decision": "approve"},
        headers=broker.headers(),
    )
    assert response.status_code == 403
    assert "agent credentials cannot approve" in error_message(response)
    assert status(broker, request_id)["approvals_received"] == 0


def test_the_requester_cannot_approve_through_the_page(tmp_path: Path) -> None:
    made = make_broker(
        tmp_path,
        approvers={**APPROVERS, "payments-copilot": Approver(name="payments-copilot")},
        groups={**GROUPS, "payments-leads": ("alice", "payments-copilot")},
    )
    request_id = open_request(made, WRITE_PAYMENTS)
    token = link_token(made, request_id, "payments-copilot")
    client = made.client
    page = client.get(f"/approve/{token}")  # the requester never sees Approve
    assert page.status_code == 403 and 'id="approve"' not in page_text(page)
    assert "cannot approve its own request" in error_message(page)
    assert WRITE_PAYMENTS["justification"] not in page_text(page)
    with pytest.raises(Forbidden, match="cannot approve its own request"):
        made.services.approvals.decide(request_id, "payments-copilot", "approve", "link")
    assert status(made, request_id)["approvals_received"] == 0
    made.services.close()


def test_another_approvers_link_cannot_be_used_from_the_same_browser(broker: Broker) -> None:
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    client = broker.client
    assert approve_via_page(client, link_token(broker, request_id, "carol")).status_code == 200
    # carol got hold of dave's link: her browser is signed in as carol.
    daves = link_token(broker, request_id, "dave")
    for response in (client.get(f"/approve/{daves}"), client.post(f"/approve/{daves}")):
        assert response.status_code == 403
    assert "signed in as carol" in error_message(client.get(f"/approve/{daves}"))
    assert status(broker, request_id, LEDGER_AGENT)["approvals_received"] == 1


def test_a_link_for_someone_not_approving_this_tier_shows_nothing_and_cannot_decide(
    broker: Broker,
) -> None:
    write = open_request(broker, WRITE_PAYMENTS)
    delete = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    client = broker.client
    shown = client.get(f"/approve/{link_token(broker, write, 'carol')}")
    page = page_text(shown)
    assert shown.status_code == 403
    assert "carol is not an approver for tier write of payments" in page
    assert 'id="decide"' not in page and WRITE_PAYMENTS["justification"] not in page
    assert "s3:PutObject" not in page and "agent:payments-copilot" not in page
    # Even with a valid CSRF token from a page she may act on, the server refuses.
    csrf = csrf_from(page_text(client.get(f"/approve/{link_token(broker, delete, 'carol')}")))
    response = client.post(
        f"/approve/{link_token(broker, write, 'carol')}",
        data={"csrf_token": csrf, "decision": "approve"},
    )
    assert response.status_code == 403
    assert status(broker, write)["approvals_received"] == 0


def test_an_approver_removed_from_the_scope_before_approving_is_refused(broker: Broker) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "bob")
    client = broker.client
    csrf = csrf_from(page_text(client.get(f"/approve/{token}")))
    path = broker.services.settings.scopes_dir / "payments.yaml"
    path.write_text(path.read_text().replace("groups: [payments-leads]", "approvers: [alice]", 1))
    assert broker.services.scopes.reload().applied
    response = client.post(f"/approve/{token}", data={"csrf_token": csrf, "decision": "approve"})
    assert response.status_code == 403
    assert "bob is not an approver for tier write of payments" in error_message(response)
    assert status(broker, request_id)["status"] == "pending"


def test_an_approver_removed_from_the_config_is_refused(tmp_path: Path) -> None:
    first = make_broker(tmp_path)
    request_id = open_request(first, WRITE_PAYMENTS)
    token = link_token(first, request_id, "bob")
    first.services.close()
    later = make_broker(
        tmp_path,
        approvers={k: v for k, v in APPROVERS.items() if k != "bob"},
        groups={**GROUPS, "payments-leads": ("alice",)},
    )
    response = later.client.get(f"/approve/{token}")
    assert response.status_code == 403
    assert "'bob' is not a configured approver" in error_message(response)
    later.services.close()


def test_delete_cannot_be_collected_before_the_delay_ends(broker: Broker) -> None:
    request_id = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    for approver in ("carol", "dave"):
        client = broker.app.test_client()  # each approver in their own browser
        assert approve_via_page(client, link_token(broker, request_id, approver)).status_code == 200
    assert status(broker, request_id, LEDGER_AGENT)["status"] == "approved"
    early = collect(broker, request_id, LEDGER_AGENT)
    assert early.status_code == 409 and "mandatory delay" in early.json["message"]
    broker.clock.advance(15 * 60)
    assert collect(broker, request_id, LEDGER_AGENT).status_code == 200


def test_links_never_reach_the_audit_log_or_logs(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    request_id = open_request(broker, WRITE_PAYMENTS)
    token = link_token(broker, request_id, "alice")
    approve_via_page(broker.client, token)
    broker.client.post(f"/approve/{token}", data={"decision": "approve"})
    trail = repr(list(broker.services.store.audit_records()))
    signature = token.rsplit(".", 1)[1]
    assert signature not in trail and signature not in caplog.text


# -- a real browser ---------------------------------------------------------------------


@pytest.fixture()
def served(tmp_path: Path, live_server: LiveServer) -> Iterator[Broker]:
    made = make_broker(tmp_path, public_url=live_server.url)
    live_server.app = made.app
    yield made
    made.services.close()


def wait_for(browser: WebDriver, element_id: str) -> str:
    element = WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )
    return str(element.text)


def test_a_browser_opens_the_link_reads_the_request_and_approves(
    served: Broker, browser: WebDriver
) -> None:
    read = served.post("/v1/credentials", READ_PAYMENTS)
    assert read.status_code == 200
    request_id = open_request(served, WRITE_PAYMENTS)
    link = served.services.links.url(link_token(served, request_id, "alice"))
    browser.get(link)
    assert wait_for(browser, "justification") == WRITE_PAYMENTS["justification"]
    assert "Signed in as Alice" in browser.find_element(By.ID, "signed-in").text
    assert "adds s3:PutObject" in browser.find_element(By.ID, "adds").text
    assert browser.find_element(By.ID, "status").text.startswith("pending")
    browser.find_element(By.ID, "approve").click()
    wait_for(browser, "outcome")  # only the outcome page has it: the form page is gone
    assert browser.find_element(By.ID, "outcome").get_attribute("data-status") == "approved"
    assert browser.find_element(By.ID, "status").text == "approved"
    # The agent now collects write credentials, once; its read credentials were read-only.
    response = collect(served, request_id)
    assert response.status_code == 200, response.json
    assert [c.tier for c in served.issuers["aws"].calls] == ["read", "write"]
    assert read.json["credentials"] != response.json["credentials"]
    # Going back re-reads the page (never cached): nothing is left to click.
    browser.back()
    assert wait_for(browser, "note").startswith("This request is collected")
    assert browser.find_elements(By.ID, "approve") == []
    assert len(served.services.store.approvals_for(request_id)) == 1


def test_a_browser_renders_injected_html_inert(served: Broker, browser: WebDriver) -> None:
    request_id = open_request(served, {**WRITE_PAYMENTS, "justification": INJECTION})
    browser.get(served.services.links.url(link_token(served, request_id, "alice")))
    assert wait_for(browser, "justification") == INJECTION
    time.sleep(0.2)  # give an injected onerror handler the chance it must not get
    assert browser.execute_script("return window.__pwned === undefined") is True
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.find_elements(By.CSS_SELECTOR, "a[href]") == []


def test_a_browser_without_the_form_cannot_decide(served: Broker, browser: WebDriver) -> None:
    """A cross-site page posting to the link (no CSRF token) is refused in the browser too."""
    request_id = open_request(served, WRITE_PAYMENTS)
    link = served.services.links.url(link_token(served, request_id, "alice"))
    browser.get(link)  # the approver's session exists, with its CSRF secret
    wait_for(browser, "approve")
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "const d = document.createElement('input'); d.name = 'decision'; d.value = 'approve';"
        "f.appendChild(d); document.body.appendChild(f); f.submit();",
        link,
    )
    assert "security token" in wait_for(browser, "error")
    assert status(served, request_id)["approvals_received"] == 0


def test_escalation_exceptions_are_shown_in_red(broker: Broker) -> None:
    """A tier granting an escalation action on purpose says so on the page, in red."""
    path = broker.services.settings.scopes_dir / "payments.yaml"
    text = path.read_text()
    old = "    approval:\n      groups: [payments-leads]\n"
    new = (
        "      - actions: [iam:PassRole]\n"
        '        resources: ["arn:aws:iam::${account}:role/payments-${env}-task"]\n'
        "    escalation_exceptions:\n"
        "      - action: iam:PassRole\n"
        "        reason: The job hands the invoices task role to ECS, and no other role.\n"
        "        reviewed_by: security review SEC-1234\n" + old
    )
    path.write_text(text.replace(old, new, 1))
    assert broker.services.scopes.reload().applied
    request_id = open_request(broker, WRITE_PAYMENTS)
    page = page_text(broker.client.get(f"/approve/{link_token(broker, request_id, 'alice')}"))
    assert 'class="warning" id="escalation-exceptions"' in page
    assert "ESCALATION EXCEPTION iam:PassRole: The job hands the invoices task role" in page
    assert "(reviewed by security review SEC-1234)" in page
    plain = open_request(broker, {**WRITE_PAYMENTS, "justification": "another"})
    assert "escalation-exceptions" in page_text(
        broker.client.get(f"/approve/{link_token(broker, plain, 'bob')}")
    )
