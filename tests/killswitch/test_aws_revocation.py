"""AWS sessions after the kill switch, enforced by the AWS stand-in: in flight, concurrent
revocations, and many revocations on one role."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from broker.guard.revocation import REVOCATION_POLICY_NAME, RevokeTarget
from broker.guard.revocation_policy import ROLE_INLINE_MAX_CHARS, size
from broker.guard.role_denials import inline_policy
from broker.intake import parse_request, resolve
from broker.issuers.aws_accounts import AwsAccounts
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker
from tests.killswitch.support import AGENT, OTHER, issue, s3_reads, shop_broker


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    return shop_broker(tmp_path, backends)


def replica(tmp_path: Path, backends: Backends) -> Broker:
    """Another replica of ``shop``: the same store and scopes, its own caches."""
    other = make_broker(tmp_path, real_issuers=backends.issuers, admins=("agent:ops",))
    other.services.kill_switch.accounts = AwsAccounts(backends.sts)
    return other


def read_role(backends: Backends) -> str:
    return f"{backends.name}-prod-read"


def test_a_session_minted_after_the_revoke_by_a_replica_that_has_not_seen_it_is_denied(
    shop: Broker, backends: Backends, tmp_path: Path
) -> None:
    """Replicas read the freezes at most once a second, and an upstream call takes time: a
    session minted after the revocation, in a later second, must be covered all the same."""
    there = replica(tmp_path, backends)
    assert there.services.guard.frozen(f"agent:{AGENT}", backends.name, "prod") is None
    shop.clock.now = time.time()
    shop.services.kill_switch.revoke(RevokeTarget(agent=f"agent:{AGENT}"), "ops", "in flight")
    # A later second than the revocation's: a cut-off merely rounded up would not cover it.
    time.sleep(math.ceil(shop.clock.now) - time.time() + 0.2)
    body = {
        "service": backends.name,
        "environment": "prod",
        "region": "us-east-1",
        "tier": "read",
        "backend": "aws",
    }
    response = there.post("/v1/credentials", body, agent=AGENT)  # its freeze cache is stale
    if response.status_code == 200:
        assert not s3_reads(backends, response.json["credentials"])
    else:
        assert response.status_code == 403 and response.json["error"] == "frozen"


def test_two_revocations_on_one_role_at_once_both_hold(
    shop: Broker, backends: Backends, tmp_path: Path
) -> None:
    mine, theirs = issue(shop, backends, AGENT, "aws"), issue(shop, backends, OTHER, "aws")
    there = replica(tmp_path, backends)
    iam = backends.sts.iam()

    def slow_read(params: dict[str, Any], **_: Any) -> None:
        # Both replicas read the policy before either writes it: the race a lock must close.
        if params.get("PolicyName") == REVOCATION_POLICY_NAME:
            time.sleep(0.4)

    iam.meta.events.register("before-call.iam.GetRolePolicy", slow_read)
    try:
        now = time.time()
        shop.clock.now = there.clock.now = now
        start = threading.Barrier(2)
        reports: list[Any] = []

        def revoke(broker: Broker, agent: str) -> None:
            start.wait()
            target = RevokeTarget(agent=f"agent:{agent}")
            reports.append(broker.services.kill_switch.revoke(target, "ops", "both at once"))

        threads = [
            threading.Thread(target=revoke, args=(shop, AGENT)),
            threading.Thread(target=revoke, args=(there, OTHER)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        iam.meta.events.unregister("before-call.iam.GetRolePolicy", slow_read)
    assert len(reports) == 2 and all(report.ok for report in reports)
    assert not s3_reads(backends, mine) and not s3_reads(backends, theirs)


def test_200_revocations_on_one_role_fit_and_every_revoked_session_stays_denied(
    shop: Broker, backends: Backends
) -> None:
    services = shop.services
    identity = services.verifier.verify(shop.token(AGENT))
    body = {
        "service": backends.name,
        "environment": "prod",
        "region": "us-east-1",
        "tier": "read",
        "backend": "aws",
    }
    resolved = resolve(parse_request(body), services.scopes.current, identity, services.iam)
    sessions = [
        services.issuance.issue(identity, resolved, None, use_cache=False) for _ in range(201)
    ]
    kept = sessions.pop()
    shop.clock.now = time.time()
    for issued in sessions:
        report = services.kill_switch.revoke(
            RevokeTarget(request_id=issued.request_id), "ops", "one of many"
        )
        assert report.ok, report.lines()
        assert not report.backends["aws"].collateral
        shop.clock.advance(0.05)
    policy = inline_policy(backends.sts.iam(), read_role(backends))
    assert policy is not None and size(policy) <= ROLE_INLINE_MAX_CHARS
    for issued in sessions:
        assert not s3_reads(backends, issued.credential.body())
    # No collateral: the same agent's unrevoked session and another agent's still work.
    assert s3_reads(backends, kept.credential.body())
    shop.clock.now = time.time()
    assert s3_reads(backends, issue(shop, backends, OTHER, "aws"))
