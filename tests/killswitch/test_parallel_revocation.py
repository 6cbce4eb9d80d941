"""The kill switch revokes many credentials at once, against real OpenBao and PostgreSQL:
every one is dead afterwards (used, not read back), and one that could not be revoked is
reported and left active, never counted as revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hvac
import psycopg
import pytest
from hvac import exceptions as vault_errors

from broker.errors import UpstreamUnavailable
from broker.store.records import IssuedRecord
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker

AGENT, ADMIN = "shop-bot", "ops"
TOKENS, LOGINS = 24, 8


def token_works(backends: Backends, token: str) -> bool:
    try:
        hvac.Client(url=backends.bao.url, token=token, timeout=5).auth.token.lookup_self()
    except vault_errors.Forbidden:
        return False
    return True


def login_works(credentials: dict[str, str]) -> bool:
    url = "postgresql://{username}:{password}@{host}:{port}/{database}".format(**credentials)
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("SELECT count(*) FROM shop.orders")
    except psycopg.Error:
        return False
    return True


def issue_many(broker: Broker, backends: Backends, backend: str, count: int) -> list[Any]:
    """``count`` distinct live credentials of one agent (each asks a different lifetime,
    so none is the cached copy of another)."""
    issued = []
    for i in range(count):
        body = {
            "service": backends.name,
            "environment": "prod",
            "tier": "read",
            "backend": backend,
            "duration": 600 + i,
        }
        response = broker.post("/v1/credentials", body, agent=AGENT)
        assert response.status_code == 200 and not response.json["cached"], response.json
        issued.append(response.json["credentials"])
    return issued


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    backends.apply(yes=True)
    return make_broker(
        tmp_path,
        real_issuers=backends.issuers,
        admins=("agent:ops",),
        revocation_concurrency=6,
    )


def test_many_tokens_and_logins_revoked_at_once_are_all_dead(
    shop: Broker, backends: Backends
) -> None:
    tokens = issue_many(shop, backends, "vault", TOKENS)
    logins = issue_many(shop, backends, "database", LOGINS)
    assert all(token_works(backends, t["token"]) for t in tokens)
    assert all(login_works(c) for c in logins)

    response = shop.post(
        "/v1/revoke",
        {"agent": f"agent:{AGENT}", "reason": "exfiltrating"},
        agent=ADMIN,
    )
    assert response.status_code == 200, response.json
    report = response.json["backends"]
    assert (report["vault"]["revoked"], report["vault"]["failed"]) == (TOKENS, 0)
    assert (report["database"]["revoked"], report["database"]["failed"]) == (LOGINS, 0)
    assert not any(token_works(backends, t["token"]) for t in tokens)
    assert not any(login_works(c) for c in logins)

    records = [
        r
        for r in shop.services.store.audit_records()
        if r.action == "revoke" and r.outcome == "revoked"
    ]
    assert len(records) == TOKENS + LOGINS
    assert {r.details["accessor"] for r in records if "accessor" in r.details} == {
        t["accessor"] for t in tokens
    }
    # Each says how long its upstream took, and which HTTP request ordered it.
    assert all(r.details["took_ms"] >= 0 for r in records)
    assert len({r.details["http_request_id"] for r in records}) == 1
    assert shop.services.store.active_issued(shop.clock(), agent_subject=f"agent:{AGENT}") == []


class Flaky:
    """A real issuer whose revocation fails for chosen accessors (the upstream refused)."""

    def __init__(self, real: Any, refused: set[str]) -> None:
        self.real, self.refused = real, refused
        self.backend = real.backend

    def issue(self, request: Any) -> Any:
        return self.real.issue(request)

    def revoke(self, record: IssuedRecord) -> None:
        if record.vault_accessor in self.refused:
            raise UpstreamUnavailable("vault: revocation refused", "vault")
        self.real.revoke(record)

    def check(self) -> None:
        self.real.check()


def test_a_credential_that_could_not_be_revoked_is_reported_and_stays_active(
    tmp_path: Path, backends: Backends
) -> None:
    backends.apply(yes=True)
    flaky = Flaky(backends.issuers["vault"], set())
    broker = make_broker(
        tmp_path,
        real_issuers={**backends.issuers, "vault": flaky},
        admins=("agent:ops",),
        revocation_concurrency=4,
    )
    tokens = issue_many(broker, backends, "vault", 10)
    kept = {tokens[2]["accessor"], tokens[7]["accessor"]}
    flaky.refused.update(kept)

    response = broker.post(
        "/v1/revoke", {"agent": f"agent:{AGENT}", "reason": "exfiltrating"}, agent=ADMIN
    )
    assert response.status_code == 207, response.json
    vault = response.json["backends"]["vault"]
    assert (vault["revoked"], vault["failed"]) == (8, 2)
    assert vault["errors"] == ["vault: revocation refused"]
    for token in tokens:
        assert token_works(backends, token["token"]) == (token["accessor"] in kept)
    # What could not be revoked is still on record as live: running it again finds it.
    active = broker.services.store.active_issued(broker.clock(), agent_subject=f"agent:{AGENT}")
    assert {r.vault_accessor for r in active} == kept
    failed = [
        r
        for r in broker.services.store.audit_records()
        if r.action == "revoke" and r.outcome == "failed"
    ]
    assert {r.details["accessor"] for r in failed} == kept
