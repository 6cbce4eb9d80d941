"""The same subject from two issuers is two agents: scopes, admins, freezes, the breaker, audit.

A tenant of an external issuer who can choose its subject claim mints ``agent:ops`` or
``agent:payments-copilot``; the broker must not take it for the local agent of that name.
The tokens are real: the local one signed by the broker's key, the other by an OIDC
provider whose JWKS is served over HTTP (tests/fixtures/agent_issuer.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select, text

from broker.config import BreakerSettings, IdentitySettings, LocalIssuer
from broker.identity.mint import mint_agent_token
from broker.identity.model import parse_principal, principal_of
from broker.store import tables as t
from broker.store.migrate import upgrade
from tests.fixtures.agent_issuer import OidcProvider
from tests.fixtures.broker import READ_PAYMENTS, Broker, make_broker

VICTIM = "agent:payments-copilot"


@pytest.fixture()
def two_issuers(tmp_path: Path, oidc: OidcProvider) -> Iterator[tuple[Broker, OidcProvider]]:
    broker = make_broker(
        tmp_path,
        admins=("agent:ops",),
        breaker=BreakerSettings(max_denials=3, max_out_of_scope=3),
        identity=IdentitySettings(
            local=LocalIssuer(), oidc=(oidc.config(identity_claims=("sub",), required_claims=()),)
        ),
    )
    yield broker, oidc
    broker.services.close()


def _tenant(oidc: OidcProvider, subject: str) -> dict[str, str]:
    """Headers of a token the external issuer signed for ``subject``."""
    return {"Authorization": f"Bearer {oidc.sign(oidc.claims(sub=subject))}"}


def test_principals_name_issuer_and_subject() -> None:
    assert principal_of("local", "agent:ops") == "agent:ops"
    assert principal_of("ci", "agent:ops") == "ci:agent:ops"
    assert parse_principal("agent:ops") == ("local", "agent:ops")
    assert parse_principal("ci:repo:acme/x:ref:main") == ("ci", "repo:acme/x:ref:main")
    with pytest.raises(ValueError, match="names no issuer"):
        parse_principal("ops")


def test_another_issuers_subject_is_not_a_requester(
    two_issuers: tuple[Broker, OidcProvider],
) -> None:
    broker, oidc = two_issuers
    assert broker.post("/v1/credentials", READ_PAYMENTS).status_code == 200
    response = broker.client.post(
        "/v1/credentials", json=READ_PAYMENTS, headers=_tenant(oidc, VICTIM)
    )
    assert response.status_code == 403
    assert response.get_json()["message"] == f"agent ci:{VICTIM} may not request scope payments"
    (record,) = broker.services.store.recent_audit(actor=f"ci:{VICTIM}", limit=5)
    assert record.outcome == "denied"


def test_another_issuers_subject_is_not_an_admin(two_issuers: tuple[Broker, OidcProvider]) -> None:
    broker, oidc = two_issuers
    body = {"agent": VICTIM, "reason": "drill"}
    forged = broker.client.post("/v1/revoke", json=body, headers=_tenant(oidc, "agent:ops"))
    assert forged.status_code == 403
    assert not broker.services.store.active_freezes()
    real = broker.client.post("/v1/revoke", json=body, headers=broker.headers("ops"))
    assert real.status_code == 200, real.get_json()
    (freeze,) = broker.services.store.active_freezes()
    assert (freeze.target, freeze.created_by) == (VICTIM, "admin:agent:ops")


def test_freezes_and_the_breaker_keep_issuers_apart(
    two_issuers: tuple[Broker, OidcProvider],
) -> None:
    """A tenant tripping the breaker on a victim's subject freezes only itself, and a freeze
    of the local agent does not stop the tenant's namesake (nor the other way round)."""
    broker, oidc = two_issuers
    scope = broker.services.settings.scopes_dir / "payments.yaml"
    scope.write_text(
        scope.read_text().replace(
            "requesters:\n", f"requesters:\n  - {{subject: '{VICTIM}', issuer: ci}}\n", 1
        )
    )
    assert broker.services.scopes.reload().applied
    tenant = _tenant(oidc, VICTIM)
    out_of_scope = {**READ_PAYMENTS, "service": "ledger"}
    for _ in range(3):
        refused = broker.client.post("/v1/credentials", json=out_of_scope, headers=tenant)
        assert refused.status_code in (403, 404)
    (freeze,) = broker.services.store.active_freezes()
    assert freeze.target == f"ci:{VICTIM}" and freeze.created_by == "circuit-breaker"
    assert broker.post("/v1/credentials", READ_PAYMENTS).status_code == 200  # the local one
    frozen = broker.client.post("/v1/credentials", json=READ_PAYMENTS, headers=tenant)
    assert frozen.status_code == 403 and frozen.get_json()["error"] == "frozen"

    lifted = broker.client.post(
        "/v1/unfreeze",
        json={"agent": f"ci:{VICTIM}", "reason": "ok"},
        headers=broker.headers("ops"),
    )
    assert lifted.status_code == 200 and lifted.get_json()["lifted"] == 1
    # The lift takes effect once the AWS revocation cut-off has passed.
    broker.clock.advance(max(0.0, lifted.get_json()["effective_at"] - broker.clock.now) + 1)
    broker.services.guard.forget_freezes()
    revoked = broker.client.post(
        "/v1/revoke", json={"agent": VICTIM, "reason": "drill"}, headers=broker.headers("ops")
    )
    assert revoked.status_code == 200
    assert broker.post("/v1/credentials", READ_PAYMENTS).get_json()["error"] == "frozen"
    allowed = broker.client.post("/v1/credentials", json=READ_PAYMENTS, headers=tenant)
    assert allowed.status_code == 200, allowed.get_json()


def test_a_revoke_target_names_its_issuer(two_issuers: tuple[Broker, OidcProvider]) -> None:
    broker, _ = two_issuers
    response = broker.client.post(
        "/v1/revoke", json={"agent": "ops", "reason": "drill"}, headers=broker.headers("ops")
    )
    assert response.status_code == 400 and "names no issuer" in response.get_json()["message"]


def test_mint_takes_the_name_or_the_subject(two_issuers: tuple[Broker, OidcProvider]) -> None:
    broker, _ = two_issuers
    local = broker.services.settings.identity.local
    for written in ("reports-bot", "agent:reports-bot"):
        token = mint_agent_token(broker.services.keys, local, written, 600)
        assert broker.services.verifier.verify(token).subject == "agent:reports-bot"


def test_the_migration_names_agents_by_issuer_and_keeps_freezes(tmp_path: Path) -> None:
    """Rows written before principals: another issuer's subjects gain their issuer, and a
    freeze of a subject still stops every agent it was seen as."""
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0003_request_grant")  # the revision before principals
    request = {
        "agent_claims": "{}",
        "service": "payments",
        "environment": "prod",
        "tier": "write",
        "backend": "aws",
        "resources": "[]",
        "duration_seconds": 900,
        "justification": "",
        "status": "pending",
        "approvals_required": 1,
        "delay_seconds": 0,
        "created_at": 1.0,
        "expires_at": 2.0,
        "notification": "{}",
        "break_glass": False,
    }
    with engine.begin() as connection:
        connection.execute(
            insert(t.requests),
            [
                {
                    **request,
                    "id": "req_1",
                    "agent_key": "ci:agent:ops:x",
                    "agent_issuer": "ci",
                    "agent_subject": "agent:ops",
                },
                {
                    **request,
                    "id": "req_2",
                    "agent_key": "local:agent:ops:y",
                    "agent_issuer": "local",
                    "agent_subject": "agent:ops",
                },
            ],
        )
        connection.execute(
            insert(t.issued).values(
                request_id="req_3",
                agent_key="gh:repo:acme/x:z",
                agent_subject="repo:acme/x",
                service="payments",
                environment="prod",
                tier="read",
                backend="aws",
                issued_at=1.0,
                expires_at=2.0,
            )
        )
        connection.execute(
            insert(t.freezes),
            [
                {
                    "kind": "agent",
                    "target": "agent:ops",
                    "reason": "breaker",
                    "created_by": "circuit-breaker",
                    "created_at": 1.0,
                },
                {
                    "kind": "agent",
                    "target": "repo:acme/x",
                    "reason": "kill switch",
                    "created_by": "cli:root",
                    "created_at": 1.0,
                },
            ],
        )
    upgrade(engine)
    with engine.begin() as connection:
        subjects = dict(
            connection.execute(select(t.requests.c.id, t.requests.c.agent_subject)).all()
        )
        issued = connection.execute(select(t.issued.c.agent_subject)).scalar_one()
        frozen = sorted(connection.execute(text("SELECT target FROM freezes")).scalars())
    assert subjects == {"req_1": "ci:agent:ops", "req_2": "agent:ops"}
    assert issued == "gh:repo:acme/x"
    assert frozen == ["agent:ops", "ci:agent:ops", "gh:repo:acme/x", "repo:acme/x"]
    engine.dispose()
