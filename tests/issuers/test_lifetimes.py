"""Credentials live as long as asked, never longer, on every backend: a requested duration
and the break-glass TTL (both shorter than the write tier's 30 minutes) reach the AWS
session, the Vault token and the database lease, and renewing does not stretch them.
Real OpenBao, PostgreSQL and the AWS stand-in; the lifetime is read from the upstream."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import hvac
import pytest
from hvac import exceptions as vault_errors

from broker.config import ApprovalSettings
from broker.guard.break_glass import BreakGlass, BreakGlassAsk
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_database import DatabaseIssuer
from broker.issuers.vault_token import VaultTokenIssuer
from tests.approvals.flows import collect, open_request
from tests.fixtures.backends import FAST_RETRY, Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.faults import Fault, fault_proxy
from tests.guard.helpers import operator

AGENT = "shop-bot"
BREAK_GLASS_TTL = 1000  # what the broker config allows break-glass credentials
ASKED = 950  # what the agent asks for (AWS's floor is 900 s)
TIER_TTL = 1800  # the write tier's own TTL (30 minutes)


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    backends.apply(yes=True)
    approvals = replace(ApprovalSettings(), break_glass_ttl_seconds=BREAK_GLASS_TTL)
    return make_broker(tmp_path, real_issuers=backends.issuers, approvals=approvals)


def resources(backends: Backends, backend: str) -> list[str]:
    return {
        "aws": [f"arn:aws:s3:::{backends.name}-prod-data/reports/*"],
        "vault": [f"{backends.name}/prod/api-key"],
        "database": ["shop.orders"],
    }[backend]


def asked(shop: Broker, backends: Backends, backend: str) -> dict[str, Any]:
    """A write request for ``ASKED`` seconds, approved and collected."""
    body: dict[str, Any] = {
        "service": backends.name,
        "environment": "prod",
        "tier": "write",
        "backend": backend,
        "resources": resources(backends, backend),
        "duration": ASKED,
    }
    if backend == "aws":
        body["region"] = "us-east-1"
    request_id = open_request(shop, body, agent=AGENT)
    shop.services.approvals.decide(request_id, "alice", "approve", via="page")
    response = collect(shop, request_id, agent=AGENT)
    assert response.status_code == 200, response.json
    return dict(response.json)


def break_glass(shop: Broker, backends: Backends, backend: str) -> dict[str, Any]:
    """A break-glass write for the agent, opened and approved by two people, collected."""
    glass = BreakGlass.from_services(shop.services)
    ask = BreakGlassAsk(
        agent=f"agent:{AGENT}",
        service=backends.name,
        environment="prod",
        region="us-east-1" if backend == "aws" else None,
        tier="write",
        backend=backend,
        resources=tuple(resources(backends, backend)),
        reason="Checkout is down: a corrupt export blocks every order; restore it now.",
    )
    request_id = glass.request(ask, "alice", operator("carol")).view.record.id
    reason = "Second pair of eyes: agreed, this cannot wait."
    glass.approve(request_id, "bob", reason, operator("dave", host="laptop-7"))
    response = collect(shop, request_id, agent=AGENT)
    assert response.status_code == 200, response.json
    return dict(response.json)


def upstream_lifetime(backends: Backends, backend: str, answer: dict[str, Any]) -> float:
    """Seconds the credential has left as its upstream says, after trying to stretch it."""
    credentials = answer["credentials"]
    if backend == "aws":
        # STS cannot extend a session: its end is the Expiration AssumeRole answered.
        ends = dt.datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00"))
        return ends.timestamp() - time.time()
    root = backends.vault_client
    if backend == "vault":
        client = hvac.Client(url=backends.bao.url, token=credentials["token"], timeout=5)
        try:
            client.auth.token.renew_self(increment="12h")
        except (vault_errors.Forbidden, vault_errors.InvalidRequest):
            pass  # refused: not renewable
        return float(client.auth.token.lookup_self()["data"]["ttl"])
    lease_id = credentials["lease_id"]
    try:
        root.sys.renew_lease(lease_id=lease_id, increment=12 * 3600)
    except vault_errors.InvalidRequest:
        pass  # refused: past the role's max TTL
    return float(root.sys.read_lease(lease_id=lease_id)["data"]["ttl"])


@pytest.mark.parametrize("backend", ["aws", "vault", "database"])
@pytest.mark.parametrize("how", ["requested", "break-glass"])
def test_credentials_live_as_long_as_asked_and_no_longer(
    shop: Broker, backends: Backends, backend: str, how: str
) -> None:
    expected = ASKED if how == "requested" else BREAK_GLASS_TTL
    answer = (asked if how == "requested" else break_glass)(shop, backends, backend)
    left = upstream_lifetime(backends, backend, answer)
    assert expected - 60 <= left <= expected + 1, (left, expected)
    assert left < TIER_TTL - 60  # not the tier's TTL
    [record] = shop.services.store.active_issued(time.time(), agent_subject=f"agent:{AGENT}")
    # The record, which the kill switch reads, outlives the credential.
    assert record.expires_at >= time.time() + left - 1


@pytest.mark.parametrize("backend", ["vault", "database"])
def test_a_slow_upstream_never_makes_a_credential_outlive_its_record(
    shop: Broker, backends: Backends, backend: str
) -> None:
    """Vault counts a lease from when it receives the call: a call delayed on its way (or
    retried) ends later than a clock read before it. The record must not end first, or
    the kill switch (which reads records not yet expired) misses a live login."""
    with fault_proxy(backends.bao.url) as proxy:
        client = make_client(proxy.url, backends.bao.root_token)
        caller = VaultCaller(backend, client, FAST_RETRY)
        issuer: Any = (
            DatabaseIssuer(caller)
            if backend == "database"
            else VaultTokenIssuer(caller, backends.bao.url)
        )
        shop.services.issuance.issuers = {**backends.issuers, backend: issuer}
        match = "/creds/" if backend == "database" else "auth/token/create"
        proxy.inject(Fault("latency", times=1, match=match, seconds=2.0))
        body = {"service": backends.name, "environment": "prod", "tier": "read"}
        response = shop.post("/v1/credentials", {**body, "backend": backend}, agent=AGENT)
    assert response.status_code == 200, response.json
    credentials = response.json["credentials"]
    root = backends.vault_client
    if backend == "database":
        lease = root.sys.read_lease(lease_id=credentials["lease_id"])["data"]
    else:
        lease = root.auth.token.lookup_accessor(credentials["accessor"])["data"]
    ends = dt.datetime.fromisoformat(lease["expire_time"]).timestamp()
    [record] = shop.services.store.active_issued(time.time(), agent_subject=f"agent:{AGENT}")
    assert record.expires_at >= ends, (record.expires_at, ends)
