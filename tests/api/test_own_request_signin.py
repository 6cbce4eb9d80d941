"""An approver who signs in as the requesting agent's own identity cannot approve.

An agent whose tokens come from the same OpenID provider, for the same subject, as its
human's sign-in is that human: whatever email the configuration matched the human by, they
may not approve its request (no Approve button, and a POST is refused). The provider is the
suite's local OIDC provider, which signs both the approver's ID token and the agent's JWT.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from broker.config import IdentitySettings, LocalIssuer, OidcIssuer
from tests.api.test_oidc_signin import error_message, sign_in, text
from tests.approvals.flows import WRITE_PAYMENTS, approve_via_page, csrf_from, link_token
from tests.fixtures.agent_issuer import OidcProvider as AgentIssuer
from tests.fixtures.broker import Broker
from tests.fixtures.oidc import ALICE, OidcProvider, oidc_broker

AUDIENCE = "credential-broker"


def _agent_issuers(provider: OidcProvider, other: AgentIssuer) -> IdentitySettings:
    """Agents from the approvers' own provider ("corp") and from a CI provider ("ci")."""
    corp = OidcIssuer(
        name="corp", issuer=provider.issuer, audience=AUDIENCE, jwks_url=f"{provider.issuer}/jwks"
    )
    ci = other.config(identity_claims=("sub",), required_claims=())
    return IdentitySettings(local=LocalIssuer(), oidc=(corp, ci))


@pytest.fixture()
def made(tmp_path: Path, oidc_provider: OidcProvider, oidc: AgentIssuer) -> Iterator[Broker]:
    broker = oidc_broker(tmp_path, oidc_provider, identity=_agent_issuers(oidc_provider, oidc))
    scope = tmp_path / "scopes" / "payments.yaml"
    requesters = "".join(
        f"  - {{issuer: {issuer}, subject: '{ALICE.sub}'}}\n" for issuer in ("corp", "ci")
    )
    scope.write_text(scope.read_text().replace("requesters:\n", f"requesters:\n{requesters}", 1))
    assert broker.services.scopes.reload().applied
    yield broker
    broker.services.close()


def _corp_agent_token(provider: OidcProvider, subject: str) -> str:
    """A JWT the approvers' provider signed for an agent (a workload signed in as ``subject``)."""
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 600}
    return jwt.encode(claims, provider.key, algorithm="RS256", headers={"kid": provider.kid})


def _open(broker: Broker, token: str) -> str:
    response = broker.client.post(
        "/v1/credentials", json=WRITE_PAYMENTS, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["request_id"])


def test_signed_in_as_the_agents_own_identity_cannot_approve(
    made: Broker, oidc_provider: OidcProvider
) -> None:
    request_id = _open(made, _corp_agent_token(oidc_provider, ALICE.sub))
    client = made.client
    signed_in = sign_in(client)  # alice, matched by her verified email; her sub is the agent's
    assert signed_in.status_code == 200
    page = client.get(f"/requests/{request_id}")
    assert page.status_code == 403 and 'id="approve"' not in text(page)
    assert WRITE_PAYMENTS["justification"] not in text(page)
    refused = client.post(
        f"/requests/{request_id}",
        data={"decision": "approve", "csrf_token": csrf_from(text(signed_in))},
    )
    assert refused.status_code == 403
    assert "cannot approve its own request" in error_message(refused)
    # Her personal link, opened in the browser she signed in with, is refused the same way.
    link = client.get(f"/approve/{link_token(made, request_id, 'alice')}")
    assert link.status_code == 403 and 'id="approve"' not in text(link)
    approvals = made.services.approvals
    assert approvals.view(approvals.get(request_id)).approvals_received == 0
    refusals = [
        r
        for r in made.services.store.audit_records(request_id=request_id)
        if r.outcome == "refused" and r.actor == "approver:alice"
    ]
    assert refusals and all("cannot approve its own request" in r.reason for r in refusals)
    # Another approver decides as usual.
    bob = approve_via_page(made.app.test_client(), link_token(made, request_id, "bob"))
    assert bob.status_code == 200 and 'data-status="approved"' in text(bob)


def test_the_same_subject_at_another_provider_is_someone_else(
    made: Broker, oidc: AgentIssuer
) -> None:
    """Issuer and subject together: a CI job whose subject happens to be alice's is not her."""
    token = oidc.sign(oidc.claims(sub=ALICE.sub))
    request_id = _open(made, token)
    client = made.client
    signed_in = sign_in(client)
    page = client.get(f"/requests/{request_id}")
    assert page.status_code == 200 and 'id="approve"' in text(page)
    decided = client.post(
        f"/requests/{request_id}",
        data={"decision": "approve", "csrf_token": csrf_from(text(signed_in))},
    )
    assert decided.status_code == 200 and 'data-status="approved"' in text(decided)
