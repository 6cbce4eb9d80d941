"""Two replicas behind one address share every decision through PostgreSQL.

Each replica is a real `broker serve` (gunicorn, two worker processes) on the same
database; requests are sent either through the round-robin proxy (one URL, as agents
see it) or straight to a named replica, so "approved on one, collected on the other" is
exactly that. Issued Vault tokens are real (OpenBao).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import hvac
import requests
from hvac import exceptions as vault_errors

from broker.guard.guard import FREEZE_CACHE_SECONDS
from broker.store.sql import SqlStore
from tests.fixtures.replicas import ADMIN, WRITE_RATE_LIMIT, ReplicaSet, Reply

A, B = "replica-a", "replica-b"


def open_write(replicas: ReplicaSet, agent: str, via: str | None = None) -> str:
    opened = replicas.call(
        "POST", "/v1/credentials", agent, via=via, json_body=replicas.body("write")
    )
    assert opened.status == 202, opened.body
    return str(opened.body["request_id"])


def token_alive(replicas: ReplicaSet, token: str) -> bool:
    try:
        hvac.Client(url=replicas.bao.url, token=token, timeout=5).auth.token.lookup_self()
    except vault_errors.Forbidden:
        return False
    return True


def test_an_approval_on_one_replica_is_honoured_by_the_other(replicas: ReplicaSet) -> None:
    agent = "fleet-approval"
    request_id = open_write(replicas, agent, via=A)
    link = replicas.link(request_id, "alice")
    with ThreadPoolExecutor(1) as pool:
        # The agent long-polls replica A while alice decides on replica B.
        poll = pool.submit(replicas.call, "GET", f"/v1/requests/{request_id}?wait=30", agent, A)
        browser, csrf = replicas.approval_form(link, via=B)
        assert replicas.decide(browser, link, csrf, via=B) == 200
        polled = poll.result(timeout=60)
    assert polled.status == 200, polled.body
    assert (polled.body["status"], polled.body["approvals_received"]) == ("approved", 1)

    collected = replicas.call("POST", f"/v1/requests/{request_id}/credentials", agent, via=A)
    assert collected.status == 200, collected.body
    token = collected.body["credentials"]["token"]
    looked_up = replicas.bao.client(token).auth.token.lookup_self()["data"]
    # The request's own policy: the tier's capabilities on the one secret it named.
    assert looked_up["policies"] == [f"broker-req-{request_id}"]

    # Collected once, across both: the other replica refuses a second collection.
    again = replicas.call("POST", f"/v1/requests/{request_id}/credentials", agent, via=B)
    assert again.status == 410, again.body


def test_a_single_use_link_decides_once_across_both(replicas: ReplicaSet) -> None:
    """The same approval form is posted to both replicas at the same instant, three times."""
    agent = "fleet-link"
    store = SqlStore.from_url(replicas.store_url, migrate=False)
    try:
        for _ in range(3):
            request_id = open_write(replicas, agent)
            link = replicas.link(request_id, "alice")
            browser, csrf = replicas.approval_form(link, via=A)
            statuses = post_on_both_at_once(replicas, browser, link, csrf)
            assert statuses == [200, 410], statuses
            state = replicas.call("GET", f"/v1/requests/{request_id}", agent)
            assert (state.body["status"], state.body["approvals_received"]) == ("approved", 1)
            trail = [
                (r.action, r.outcome, r.reason) for r in store.audit_records(request_id=request_id)
            ]
            assert trail.count(("approve", "recorded", "")) == 1
            assert ("approve", "refused", "approval link replayed") in trail
    finally:
        store.close()


def post_on_both_at_once(
    replicas: ReplicaSet, browser: requests.Session, link: str, csrf: str
) -> list[int]:
    """Submit one approval form to replica A and replica B at the same instant."""
    barrier = threading.Barrier(2)

    def post(via: str) -> int:
        twin = requests.Session()  # the same browser cookie, one session per thread
        twin.cookies.update(browser.cookies)
        barrier.wait(30)
        return replicas.decide(twin, link, csrf, via=via)

    with ThreadPoolExecutor(2) as pool:
        return sorted(pool.map(post, (A, B)))


def test_rate_limits_hold_across_both(replicas: ReplicaSet) -> None:
    """Ten simultaneous write requests through the one address: five reach each replica,
    and exactly the tier's limit is accepted in all (per replica, it would be 2 x 4)."""
    agent = "fleet-rate"
    attempts = 10

    def ask(_: int) -> Reply:
        return replicas.call("POST", "/v1/credentials", agent, json_body=replicas.body("write"))

    with ThreadPoolExecutor(attempts) as pool:
        replies = list(pool.map(ask, range(attempts)))
    assert Counter(r.replica for r in replies) == {A: attempts // 2, B: attempts // 2}
    statuses = Counter(r.status for r in replies)
    assert statuses == {202: WRITE_RATE_LIMIT, 429: attempts - WRITE_RATE_LIMIT}, statuses
    for refused in (r for r in replies if r.status == 429):
        assert refused.body["error"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) == refused.body["retry_after"] > 0


def test_a_kill_switch_on_one_replica_holds_on_the_other(replicas: ReplicaSet) -> None:
    agent, bystander = "fleet-frozen", "fleet-bystander"
    issued = replicas.call("POST", "/v1/credentials", agent, via=B, json_body=replicas.body())
    assert issued.status == 200, issued.body
    token = issued.body["credentials"]["token"]
    assert token_alive(replicas, token)

    revoked = replicas.call(
        "POST",
        "/v1/revoke",
        ADMIN,
        via=A,
        json_body={"agent": f"agent:{agent}", "reason": "runaway agent"},
    )
    answered = time.monotonic()
    assert revoked.status == 200, revoked.body
    # Replica A found and revoked the token replica B issued (the record is shared).
    assert revoked.body["backends"]["vault"]["revoked"] == 1
    assert not token_alive(replicas, token)

    # Every worker of every replica re-reads freezes at least every FREEZE_CACHE_SECONDS:
    # from then on, each of them refuses. Several requests per replica reach both workers.
    wait_until(answered + FREEZE_CACHE_SECONDS + 0.05)
    for via in (B, A) * 4:
        refused = replicas.call(
            "POST", "/v1/credentials", agent, via=via, json_body=replicas.body()
        )
        assert (refused.status, refused.body.get("error")) == (403, "frozen"), (via, refused.body)
    other = replicas.call("POST", "/v1/credentials", bystander, via=B, json_body=replicas.body())
    assert other.status == 200, other.body  # only the named agent is frozen

    lifted = replicas.call(
        "POST",
        "/v1/unfreeze",
        ADMIN,
        via=B,
        json_body={"agent": f"agent:{agent}", "reason": "loop fixed"},
    )
    assert lifted.status == 200 and lifted.body["lifted"] == 1, lifted.body
    # The lift takes effect once the AWS revocation cut-off has passed (the upstream
    # deadline and the freeze cache after the revocation): until then, still frozen.
    effective_in = lifted.body["effective_at"] - time.time()
    assert 0 < effective_in <= 10 + 2 * FREEZE_CACHE_SECONDS + 1
    early = replicas.call("POST", "/v1/credentials", agent, via=A, json_body=replicas.body())
    assert (early.status, early.body.get("error")) == (403, "frozen"), early.body
    wait_until(time.monotonic() + effective_in + FREEZE_CACHE_SECONDS + 0.05)
    for via in (A, B) * 2:
        served = replicas.call("POST", "/v1/credentials", agent, via=via, json_body=replicas.body())
        assert served.status == 200, (via, served.body)


def wait_until(moment: float) -> None:
    """Sleep until ``moment`` (time.monotonic): a documented bound, not a measurement."""
    time.sleep(max(0.0, moment - time.monotonic()))
