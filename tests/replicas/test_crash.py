"""kill -9 of one replica under load: nothing it acknowledged is lost, the chain verifies,
the survivor keeps serving, and the restarted replica sees everything."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from broker.store.sql import SqlStore
from tests.fixtures.replicas import ReplicaSet

A, B = "replica-a", "replica-b"
THREADS = 4
BEFORE_KILL = 3  # answers of each kind replica B must have given before it is killed
AFTER_KILL = 20  # answers the survivor must give after the kill
DYING = 2.0  # seconds: a generous bound on how long a killed process group takes to go


@dataclass(frozen=True)
class Outcome:
    agent: str
    tier: str
    status: int  # 0: the connection to the proxy itself failed
    body: dict[str, Any]
    replica: str


def eventually(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Wait for ``condition``; the timeout only stops a hung test, it measures nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


class Load:
    """Agents asking through the one address, from several threads, until stopped.

    Every request is a new agent's (so reads are real issuances, never the cache, and
    no agent reaches the write tier's rate limit); odd requests read, even ones ask for
    write (202, pending approval).
    """

    def __init__(self, replicas: ReplicaSet) -> None:
        self.replicas = replicas
        self.outcomes: list[Outcome] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(THREADS)]

    def _run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            tier = "read" if n % 2 else "write"
            agent = f"fleet-load-{worker}-{n}"
            try:
                reply = self.replicas.call(
                    "POST", "/v1/credentials", agent, json_body=self.replicas.body(tier)
                )
                outcome = Outcome(agent, tier, reply.status, reply.body, reply.replica)
            except requests.RequestException:
                outcome = Outcome(agent, tier, 0, {}, "")
            with self._lock:
                self.outcomes.append(outcome)

    def count(self, replica: str, status: int) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if (o.replica, o.status) == (replica, status))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)


def test_killing_a_replica_loses_no_request_approval_or_audit_record(
    own_replicas: ReplicaSet,
) -> None:
    replicas = own_replicas
    proxy = replicas.proxy
    # An escalation approved on replica B before it crashes.
    agent = "fleet-crash"
    opened = replicas.call(
        "POST", "/v1/credentials", agent, via=B, json_body=replicas.body("write")
    )
    assert opened.status == 202, opened.body
    approved_id = str(opened.body["request_id"])
    link = replicas.link(approved_id, "alice")
    browser, csrf = replicas.approval_form(link, via=B)
    assert replicas.decide(browser, link, csrf, via=B) == 200

    with Load(replicas) as load:
        eventually(
            lambda: load.count(B, 200) >= BEFORE_KILL and load.count(B, 202) >= BEFORE_KILL,
            "replica B answering reads and escalations",
        )
        killed_at = time.monotonic()
        replicas.replicas[B].kill()
        served_by_b = proxy.served[B]
        survivor_before = proxy.served[A]
        eventually(lambda: proxy.served[A] >= survivor_before + AFTER_KILL, "the survivor serving")
    outcomes = load.outcomes

    # Only requests in flight on B at the crash failed, as 502 from the proxy: those being
    # answered, and those that reached B's listening socket while its processes were dying
    # (the kernel still accepts there until the last of them has exited); everything else
    # was answered.
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 202, 502}, statuses
    assert statuses[502] == proxy.broken[B], statuses
    assert all(at - killed_at < DYING for at, name in proxy.broken_at if name == B)
    assert proxy.broken[A] == 0
    assert proxy.served[B] == served_by_b  # nothing reached B after the kill
    after_kill = [o for o in outcomes[-AFTER_KILL:] if o.status in (200, 202)]
    assert after_kill and {o.replica for o in after_kill} == {A}

    store = SqlStore.from_url(replicas.store_url, migrate=False)
    try:
        trail = {(r.request_id, r.action, r.outcome) for r in store.audit_records()}
        issued = {r.request_id for r in store.active_issued(time.time())}
        for outcome in outcomes:
            request_id = outcome.body.get("request_id")
            if outcome.status == 200:  # credentials handed out: recorded and audited
                assert request_id in issued, outcome.replica
                assert (request_id, "issue", "issued") in trail
            elif outcome.status == 202:  # an escalation acknowledged: stored and audited
                assert (request_id, "request", "pending") in trail
        for outcome in (o for o in outcomes if o.status == 202 and o.replica == B):
            state = replicas.call(
                "GET", f"/v1/requests/{outcome.body['request_id']}", outcome.agent
            )
            assert (state.status, state.body["status"], state.replica) == (200, "pending", A)
    finally:
        store.close()

    # The approval given on B holds: the survivor hands out the credentials.
    state = replicas.call("GET", f"/v1/requests/{approved_id}", agent)
    assert (state.body["status"], state.body["approvals_received"]) == ("approved", 1)
    collected = replicas.call("POST", f"/v1/requests/{approved_id}/credentials", agent)
    assert (collected.status, collected.replica) == (200, A), collected.body

    # The hash chain written by both replicas, one of them killed mid-write, is intact.
    verified = replicas.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "the hash chain is intact" in verified.stdout

    # Restarted, replica B sees everything the survivor did meanwhile.
    replicas.replicas[B].start()
    again = replicas.call("POST", f"/v1/requests/{approved_id}/credentials", agent, via=B)
    assert again.status == 410, again.body  # collected once, on A
