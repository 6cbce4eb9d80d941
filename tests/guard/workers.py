"""A broker in its own OS process that fires credential requests when told to (a replica).

Started with multiprocessing's "spawn" method: the child shares nothing with the test but
the files under ``root`` (scopes, keys) and the database at ``store_url``.
"""

from __future__ import annotations

import threading
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from broker.app import create_app
from broker.identity.mint import mint_agent_token
from broker.services import build_services
from broker.store.sql import SqlStore
from tests.fixtures.broker import FakeIssuer
from tests.fixtures.broker import test_settings as broker_settings


def fire_requests(
    root: str,
    store_url: str,
    body: dict[str, Any],
    agent: str,
    threads: int,
    per_thread: int,
    ready: Queue[str],
    start: Event,
    results: Queue[list[tuple[int, str | None]]],
) -> None:
    """Build a broker on ``store_url``, then post ``body`` from ``threads`` threads at once.

    Puts one list of (status, Retry-After header) per process on ``results``. Runs on the
    real clock: a fake clock would stand still at a different instant in each process.
    """
    settings = broker_settings(Path(root))
    issuers = {name: FakeIssuer(name, time.time) for name in ("aws", "vault", "database")}
    services = build_services(
        settings, clock=time.time, issuers=issuers, store=SqlStore.from_url(store_url)
    )
    app = create_app(services=services)
    token = mint_agent_token(services.keys, settings.identity.local, agent, 3600)
    headers = {"Authorization": f"Bearer {token}"}
    outcomes: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def run() -> None:
        client = app.test_client()
        start.wait(60)
        for _ in range(per_thread):
            response = client.post("/v1/credentials", json=body, headers=headers)
            with lock:
                outcomes.append((response.status_code, response.headers.get("Retry-After")))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    ready.put("ready")
    for worker in workers:
        worker.join(120)
    results.put(outcomes)
    services.close()
