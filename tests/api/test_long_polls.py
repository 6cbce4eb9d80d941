"""Agents waiting for approval cannot take the broker's threads from everyone else.

A long poll (``GET /v1/requests/{id}?wait=30``) holds a worker thread while it waits.
Twenty agents waiting at once (CI jobs queued behind one approver) held every thread of
a default pod, and health checks, the kill switch over HTTP and other agents waited up
to 30 s behind them. Tested against `broker serve` (gunicorn, one worker of 8 threads).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
import yaml

from broker.config import load_settings
from broker.devstack.processes import free_port
from broker.identity.mint import mint_agent_token
from broker.keys import load_keys
from tests.fixtures.broker import READ_PAYMENTS, make_broker
from tests.fixtures.serve import broker_serve

WRITE_PAYMENTS = {
    **READ_PAYMENTS,
    "tier": "write",
    "resources": ["arn:aws:s3:::payments-prod-invoices/2024/a.pdf"],
    "justification": "fix an invoice in the November batch",
}


def test_waiting_agents_leave_threads_for_the_rest_of_the_api(tmp_path: Path) -> None:
    made = make_broker(tmp_path)
    made.services.close()
    port = free_port()
    config = made.write_config(tmp_path / "broker.yaml")
    data = yaml.safe_load(config.read_text())
    data.update(listen=f"127.0.0.1:{port}", workers=1, threads=8)
    config.write_text(yaml.safe_dump(data))
    settings = load_settings(config)
    token = mint_agent_token(
        load_keys(settings.state_dir), settings.identity.local, "payments-copilot", 600
    )
    headers = {"Authorization": f"Bearer {token}"}
    server, url = broker_serve(config, port, tmp_path / "serve.log")
    try:
        opened = requests.post(f"{url}/v1/credentials", json=WRITE_PAYMENTS, headers=headers)
        assert opened.status_code == 202, opened.text
        poll = f"{url}/v1/requests/{opened.json()['request_id']}?wait=30"

        def wait() -> tuple[int, float]:
            started = time.monotonic()
            answer = requests.get(poll, headers=headers, timeout=60)
            return answer.status_code, time.monotonic() - started

        with ThreadPoolExecutor(max_workers=20) as pool:
            waiting = [pool.submit(wait) for _ in range(20)]
            time.sleep(1.5)  # every poll has arrived
            started = time.monotonic()
            health = requests.get(f"{url}/healthz", timeout=40)
            scopes = requests.get(f"{url}/v1/scopes", headers=headers, timeout=40)
            elapsed = time.monotonic() - started
            answers = [f.result() for f in waiting]
        assert health.status_code == 200 and scopes.status_code == 200
        assert elapsed < 2, f"the API waited {elapsed:.1f} s behind the long polls"
        assert {status for status, _ in answers} == {200}  # every poll answered, pending
        held = [took for _, took in answers if took > 20]
        assert 1 <= len(held) <= 4, sorted(took for _, took in answers)  # half the threads
    finally:
        server.stop()
