"""XSS in every field the approval page shows, checked in a real browser.

The payloads ride in on every way an attacker can put text on the page: the agent's
subject and identity claims (an OIDC token from a CI system, whose JWKS is served over
HTTP), its justification, its resources (only the characters a scope pattern lets through:
entities, not tags), approvers' display names and email addresses (config), and a deny
reason typed by another approver, which the next approver sees in the agent's history and
the decider sees on the outcome page. Each payload would set a window flag, retitle the
page or add an element if it ran; the test asserts none of that happened and that the
payload is visible as literal text.

Two layers are checked separately. With the broker's real headers, the
Content-Security-Policy forbids every script (no script-src, no 'unsafe-inline'). Then
the same pages are served through a proxy that drops the policy, so escaping alone must
keep the payloads inert: a template that stopped escaping a field fails this test even
though the policy would have hidden it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from broker.config import Approver, IdentitySettings, LocalIssuer
from tests.adversarial.support import PATIENT_BREAKER
from tests.approvals.flows import WRITE_PAYMENTS, link_token
from tests.fixtures.agent_issuer import OidcProvider
from tests.fixtures.broker import APPROVERS, Broker, make_broker
from tests.fixtures.browser import LiveServer


def payload(field: str) -> str:
    """Markup that would flag, retitle and add an element if a browser ever ran it."""
    return (
        f"</pre></td></tr></table><script>window.__xss='{field}';document.title='pwned'"
        f"</script><img src=x onerror=\"window.__xss='{field}-img'\">"
        f'<svg onload="window.__xss=\'{field}-svg\'"></svg><b id="injected-{field}">b</b>'
        f"<iframe srcdoc=\"<script>parent.__xss='{field}-frame'</script>\"></iframe>"
        f"&lt;escaped&gt; &amp; {{{{7*7}}}} ${{7*7}}"
    )


SUBJECT, REPOSITORY, WORKFLOW = payload("sub"), payload("repository"), payload("workflow")
JUSTIFICATION, DENY_REASON = payload("justification"), payload("deny-reason")
ALICE_NAME, ALICE_EMAIL, BOB_NAME = payload("alice"), payload("alice-email"), payload("bob")
# A scope's pattern lets entities through, never '<': shown literally, never decoded.
RESOURCE = "arn:aws:s3:::payments-prod-invoices/&lt;img&gt;&#x3C;script&#x3E;x=1;&amp;/*"


class CspStripper:
    """A proxy in front of the broker that can drop the Content-Security-Policy header."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.strip = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            if self.strip:
                headers = [(k, v) for k, v in headers if k.lower() != "content-security-policy"]
            return start_response(status, headers, *rest)

        return self.app(environ, start)


@dataclass
class Stage:
    broker: Broker
    proxy: CspStripper
    first: str  # a request bob will deny with a payload reason
    second: str  # the request alice reads, with the first in its history


@pytest.fixture()
def stage(tmp_path: Path, live_server: LiveServer, oidc: OidcProvider) -> Iterator[Stage]:
    approvers = {
        **APPROVERS,
        "alice": Approver("alice", display_name=ALICE_NAME, email=ALICE_EMAIL),
        "bob": Approver("bob", display_name=BOB_NAME, email="bob@example.com"),
    }
    broker = make_broker(
        tmp_path,
        public_url=live_server.url,
        approvers=approvers,
        breaker=PATIENT_BREAKER,
        identity=IdentitySettings(local=LocalIssuer(), oidc=(oidc.config(),)),
    )
    scope = broker.services.settings.scopes_dir / "payments.yaml"
    scope.write_text(
        scope.read_text().replace(
            "requesters:\n", f'requesters:\n  - claims: {{iss: "{oidc.issuer}"}}\n', 1
        )
    )
    assert broker.services.scopes.reload().applied
    proxy = CspStripper(broker.app)
    live_server.app = proxy
    token = oidc.sign(oidc.claims(sub=SUBJECT, repository=REPOSITORY, workflow=WORKFLOW))
    ids = []
    for n in range(2):
        body = {
            **WRITE_PAYMENTS,
            "resources": [RESOURCE.replace("x=1", f"x={n}")],
            "justification": JUSTIFICATION,
        }
        response = broker.client.post(
            "/v1/credentials", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["request_id"])
    yield Stage(broker, proxy, *ids)
    broker.services.close()


def load(browser: WebDriver, url: str, element_id: str) -> None:
    """Open ``url`` and wait until it has loaded completely (images errored, events run)."""
    browser.get(url)
    WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def assert_inert(browser: WebDriver, title: str) -> None:
    assert browser.execute_script("return window.__xss === undefined") is True, (
        browser.execute_script("return String(window.__xss)")
    )
    assert browser.title == title
    for tag in ("script", "img", "svg", "iframe"):
        assert browser.find_elements(By.TAG_NAME, tag) == [], tag
    assert browser.find_elements(By.CSS_SELECTOR, "[id^='injected-']") == []
    assert browser.find_elements(By.CSS_SELECTOR, "[onerror], [onload]") == []


def text(browser: WebDriver, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def deny_in_the_browser(stage: Stage, browser: WebDriver) -> None:
    """bob opens his link, types a payload as the reason and denies; the outcome shows it."""
    url = stage.broker.services.links.url(link_token(stage.broker, stage.first, "bob"))
    load(browser, url, "deny")
    browser.find_element(By.ID, "reason").send_keys(DENY_REASON)
    browser.find_element(By.ID, "deny").click()
    WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, "outcome"))
    )
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    assert_inert(browser, "Decision recorded - credential broker")
    page = str(browser.find_element(By.TAG_NAME, "body").text)
    assert f"denied by bob: {DENY_REASON}" in page
    assert f"Signed in as {BOB_NAME}" in page


def read_in_the_browser(stage: Stage, browser: WebDriver) -> None:
    """alice opens her link to the second request: every field shows its payload as text."""
    url = stage.broker.services.links.url(link_token(stage.broker, stage.second, "alice"))
    load(browser, url, "justification")
    assert_inert(browser, "Approve write on payments? - credential broker")
    assert text(browser, "justification") == JUSTIFICATION
    assert SUBJECT in text(browser, "agent")
    claims = text(browser, "claims")
    assert f"repository = {REPOSITORY}" in claims and f"workflow = {WORKFLOW}" in claims
    assert RESOURCE in text(browser, "resources")  # the second request names x=1
    assert "&lt;img&gt;&#x3C;script&#x3E;" in text(browser, "adds")
    assert ALICE_NAME in text(browser, "signed-in") and ALICE_EMAIL in text(browser, "signed-in")
    assert DENY_REASON in text(browser, "history")
    heading = str(browser.find_element(By.TAG_NAME, "h1").text)
    assert heading.startswith(f"ci:{SUBJECT}") and "payments / prod" in heading


def test_the_content_security_policy_forbids_every_script(stage: Stage) -> None:
    """The real header, fetched over HTTP like the browser does."""
    url = stage.broker.services.links.url(link_token(stage.broker, stage.second, "alice"))
    with urlopen(Request(url), timeout=30) as response:  # noqa: S310 - our own localhost
        csp = response.headers["Content-Security-Policy"]
        html = response.read().decode()
    directives = dict(d.strip().partition(" ")[::2] for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert "script-src" not in directives and "script-src-elem" not in directives
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "<script" not in html.lower() and "<img" not in html.lower()


def test_payloads_are_inert_in_a_browser_behind_the_policy(
    stage: Stage, browser: WebDriver
) -> None:
    deny_in_the_browser(stage, browser)
    browser.delete_all_cookies()  # the next approver's own browser
    read_in_the_browser(stage, browser)


def test_payloads_are_inert_by_escaping_alone(stage: Stage, browser: WebDriver) -> None:
    """The same pages with the policy dropped on the way: escaping alone must hold."""
    stage.proxy.strip = True
    url = stage.broker.services.links.url(link_token(stage.broker, stage.second, "alice"))
    with urlopen(Request(url), timeout=30) as response:  # noqa: S310 - our own localhost
        assert "Content-Security-Policy" not in response.headers  # the proxy works
    deny_in_the_browser(stage, browser)
    browser.delete_all_cookies()
    read_in_the_browser(stage, browser)
