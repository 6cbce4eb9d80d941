"""The kill switch revokes many credentials at once, against real OpenBao, PostgreSQL and
the AWS stand-in: every one is dead afterwards (used, not read back), and one that could
not be revoked is reported and left active, never counted as revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.errors import UpstreamUnavailable
from broker.store.records import IssuedRecord
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker
from tests.killswitch.support import ADMIN, AGENT, can_log_in, s3_reads, shop_broker, vault_alive

TOKENS, LOGINS, SESSIONS = 24, 8, 3


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
            "duration": 900 + i,
        }
        if backend == "aws":
            body["region"] = "us-east-1"
        response = broker.post("/v1/credentials", body, agent=AGENT)
        assert response.status_code == 200 and not response.json["cached"], response.json
        issued.append(response.json["credentials"])
    return issued


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    return shop_broker(tmp_path, backends, revocation_concurrency=6)


def test_many_tokens_and_logins_revoked_at_once_are_all_dead(
    shop: Broker, backends: Backends
) -> None:
    tokens = issue_many(shop, backends, "vault", TOKENS)
    logins = issue_many(shop, backends, "database", LOGINS)
    sessions = issue_many(shop, backends, "aws", SESSIONS)
    assert all(vault_alive(backends, t["token"]) for t in tokens)
    assert all(can_log_in(c) for c in logins)
    assert all(s3_reads(backends, c) for c in sessions)

    response = shop.post(
        "/v1/revoke",
        {"agent": f"agent:{AGENT}", "reason": "exfiltrating"},
        agent=ADMIN,
    )
    assert response.status_code == 200, response.json
    report = response.json["backends"]
    assert (report["vault"]["revoked"], report["vault"]["failed"]) == (TOKENS, 0)
    assert (report["database"]["revoked"], report["database"]["failed"]) == (LOGINS, 0)
    assert (report["aws"]["revoked"], report["aws"]["failed"]) == (SESSIONS, 0)
    assert not any(vault_alive(backends, t["token"]) for t in tokens)
    assert not any(can_log_in(c) for c in logins)
    assert not any(s3_reads(backends, c) for c in sessions)

    records = [
        r
        for r in shop.services.store.audit_records()
        if r.action == "revoke" and r.outcome == "revoked"
    ]
    assert len(records) == TOKENS + LOGINS + SESSIONS
    assert {r.details["accessor"] for r in records if "accessor" in r.details} == {
        t["accessor"] for t in tokens
    }
    # Each says how long its upstream took (a session: the deny on its role), and which
    # HTTP request ordered it.
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
        assert vault_alive(backends, token["token"]) == (token["accessor"] in kept)
    # What could not be revoked is still on record as live: running it again finds it.
    active = broker.services.store.active_issued(broker.clock(), agent_subject=f"agent:{AGENT}")
    assert {r.vault_accessor for r in active} == kept
    failed = [
        r
        for r in broker.services.store.audit_records()
        if r.action == "revoke" and r.outcome == "failed"
    ]
    assert {r.details["accessor"] for r in failed} == kept
