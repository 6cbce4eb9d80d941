"""Approvers acting at the same moment on two broker processes sharing PostgreSQL.

Two replicas run in their own OS processes on one database. Every approver opens the
page on one replica and submits at the same instant (a barrier releases them together),
alternating replicas. Exactly the required number of approvals is recorded, the request
is approved once, and its credentials are collected once although the agent asks both
replicas at the same moment.
"""

from __future__ import annotations

import multiprocessing
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.store.sql import SqlStore
from tests.approvals.flows import LEDGER_AGENT, WRITE_PAYMENTS, open_request
from tests.approvals.workers import serve_replica
from tests.fixtures.broker import Broker, make_broker

ROUNDS = 3
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Replicas:
    urls: list[str]


@pytest.fixture()
def shared(tmp_path: Path, postgres_url: str) -> Iterator[Broker]:
    """The test's own broker on the shared database (it opens requests and mints links)."""
    made = make_broker(tmp_path, store=SqlStore.from_url(postgres_url))
    path = made.services.settings.scopes_dir / "ledger-secrets.yaml"
    text = path.read_text()
    old = "approvers: [alice, bob]\n      required: 1"
    assert old in text
    path.write_text(text.replace(old, "approvers: [alice, bob, carol]\n      required: 2"))
    assert made.services.scopes.reload().applied
    yield made
    made.services.close()


@pytest.fixture()
def replicas(tmp_path: Path, postgres_url: str, shared: Broker) -> Iterator[Replicas]:
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    stop = context.Event()
    processes = [
        context.Process(target=serve_replica, args=(str(tmp_path), postgres_url, ready, stop))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    try:
        ports = [ready.get(timeout=120) for _ in processes]
        yield Replicas([f"http://127.0.0.1:{port}" for port in ports])
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)


def at_once(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run every action in its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = actions[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def ready_form(base: str, token: str) -> tuple[requests.Session, str]:
    """An approver's browser session on one replica, with the form's CSRF token."""
    session = requests.Session()
    page = session.get(f"{base}/approve/{token}", timeout=30)
    assert page.status_code == 200, page.text[:300]
    match = _CSRF.search(page.text)
    assert match
    return session, match.group(1)


LEDGER_WRITE = {
    "service": "ledger",
    "environment": "prod",
    "tier": "write",
    "backend": "vault",
    "resources": ["ledger/prod/config"],
    "justification": "rotate the ledger's API key",
}


@pytest.mark.parametrize(
    ("body", "agent", "approvers", "required"),
    [
        (WRITE_PAYMENTS, "payments-copilot", ("alice", "bob"), 1),
        (LEDGER_WRITE, LEDGER_AGENT, ("alice", "bob", "carol"), 2),
    ],
    ids=["two-approvers-one-required", "three-approvers-two-required"],
)
def test_simultaneous_approvals_on_two_replicas_count_exactly_once(
    shared: Broker,
    replicas: Replicas,
    secret_scan: Any,
    body: dict[str, Any],
    agent: str,
    approvers: tuple[str, ...],
    required: int,
) -> None:
    store = shared.services.store
    for _ in range(ROUNDS):
        request_id = open_request(shared, body, agent=agent)
        forms = []
        for index, approver in enumerate(approvers):
            base = replicas.urls[index % 2]
            token = shared.services.links.mint(request_id, approver)
            session, csrf = ready_form(base, token)
            forms.append((session, f"{base}/approve/{token}", csrf))

        def submit(form: tuple[requests.Session, str, str]) -> Callable[[], int]:
            session, url, csrf = form
            return lambda: (
                session.post(
                    url, data={"csrf_token": csrf, "decision": "approve"}, timeout=60
                ).status_code
            )

        statuses = at_once([submit(form) for form in forms])
        assert sorted(statuses) == [200] * required + [409] * (len(approvers) - required)
        recorded = store.approvals_for(request_id)
        assert len(recorded) == required and {a.decision for a in recorded} == {"approve"}
        record = store.get_request(request_id)
        assert record is not None and record.status == "approved"
        transitions = [
            r.outcome
            for r in store.audit_records(request_id=request_id)
            if r.action == "request" and r.outcome == "approved"
        ]
        assert transitions == ["approved"]

        headers = {"Authorization": f"Bearer {shared.token(agent)}"}

        def fetch(url: str, headers: dict[str, str]) -> Callable[[], requests.Response]:
            return lambda: requests.post(url, headers=headers, timeout=60)

        collected = at_once(
            [
                fetch(f"{base}/v1/requests/{request_id}/credentials", headers)
                for base in replicas.urls
            ]
        )
        codes = sorted(r.status_code for r in collected)
        assert codes == [200, 410], [r.text[:200] for r in collected]
        [winner] = [r for r in collected if r.status_code == 200]
        # Only the secret part: access key ids and accessors belong in the audit trail.
        secret_scan.add_secret(winner.json()["credentials"]["secret"], "a replica's secret")
        final = store.get_request(request_id)
        assert final is not None and final.status == "collected"
