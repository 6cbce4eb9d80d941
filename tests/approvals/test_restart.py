"""A broker killed with -9 while a request is pending: everything survives the restart.

A real ``broker serve`` (gunicorn) on SQLite, with no Slack configured (so the log
notifier): the agent asks, an operator prints two approvers' links with ``broker
approvals link``, the first approver approves, the second opens the page, and the
server is killed with SIGKILL. After a restart the request is still pending with its
approval, the second approver's form (and session) still works, and the first link
stays used.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from broker.config import LocalIssuer
from broker.identity.mint import mint_agent_token
from broker.keys import load_keys
from tests.approvals.flows import DELETE_LEDGER, LEDGER_AGENT
from tests.fixtures.broker import APPROVERS, GROUPS, ROOT

BROKER = str(Path(sys.executable).parent / "broker")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``broker serve`` in its own process group (gunicorn's master and worker)."""

    def __init__(self, config: Path, url: str, log: Path) -> None:
        self.config, self.url, self.log = config, url, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [BROKER, "serve", "--config", str(self.config), "--workers", "1"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("broker serve did not start:\n" + self.log.read_text()[-2000:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)


@pytest.fixture()
def config(tmp_path: Path) -> tuple[Path, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    document: dict[str, Any] = {
        "scopes_dir": str(ROOT / "scopes"),
        "state_dir": str(tmp_path / "state"),
        "public_url": url,
        "listen": f"127.0.0.1:{port}",
        "workers": 1,
        "approvers": {
            name: {"name": a.display_name, "email": a.email, "slack_user_id": a.slack_user_id}
            for name, a in APPROVERS.items()
        },
        "groups": {name: list(members) for name, members in GROUPS.items()},
    }
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, url


@pytest.fixture()
def server(tmp_path: Path, config: tuple[Path, str]) -> Iterator[Server]:
    path, url = config
    running = Server(path, url, tmp_path / "serve.log")
    running.start()
    yield running
    running.kill(signal.SIGTERM)


def cli_link(config: Path, request_id: str, approver: str) -> str:
    result = subprocess.run(
        [
            BROKER,
            "approvals",
            "link",
            "--request",
            request_id,
            "--approver",
            approver,
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/approve/[\w.-]+", link), "not a link"
    return link


def open_form(session: requests.Session, link: str) -> str:
    page = session.get(link, timeout=30)
    assert page.status_code == 200, page.text[:300]
    match = _CSRF.search(page.text)
    assert match
    return match.group(1)


def test_a_pending_request_its_approvals_and_its_links_survive_kill_9(
    tmp_path: Path, config: tuple[Path, str], server: Server, secret_scan: Any
) -> None:
    path, url = config
    secret_scan.watch(server.log)
    keys = load_keys(tmp_path / "state")
    agent = {"Authorization": "Bearer " + mint_agent_token(keys, LocalIssuer(), LEDGER_AGENT, 3600)}
    asked = requests.post(f"{url}/v1/credentials", json=DELETE_LEDGER, headers=agent, timeout=30)
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request_id"]

    carol_link = cli_link(path, request_id, "carol")
    dave_link = cli_link(path, request_id, "dave")
    carol = requests.Session()
    carol_csrf = open_form(carol, carol_link)
    decided = carol.post(
        carol_link, data={"csrf_token": carol_csrf, "decision": "approve"}, timeout=30
    )
    assert decided.status_code == 200 and 'data-status="pending"' in decided.text
    dave = requests.Session()
    dave_csrf = open_form(dave, dave_link)  # dave has the page open...

    server.kill()  # ...when the broker dies without a chance to clean up
    server.start()

    state = requests.get(f"{url}/v1/requests/{request_id}", headers=agent, timeout=30).json()
    assert (state["status"], state["approvals_received"]) == ("pending", 1)
    # The form dave opened before the crash still submits: same keys, same session secret.
    approved = dave.post(
        dave_link, data={"csrf_token": dave_csrf, "decision": "approve"}, timeout=30
    )
    assert approved.status_code == 200, approved.text[-500:]
    assert 'data-status="approved"' in approved.text
    state = requests.get(f"{url}/v1/requests/{request_id}", headers=agent, timeout=30).json()
    assert (state["status"], state["approvals_received"]) == ("approved", 2)
    # carol's link was used before the crash, and stays used.
    replay = carol.post(carol_link, data={"csrf_token": carol_csrf, "decision": "deny"}, timeout=30)
    assert replay.status_code == 410 and "already used" in replay.text
    again = carol.get(carol_link, timeout=30)
    assert "You already approved it" in again.text
    # The delete tier's delay runs from the second approval: not collectable yet.
    early = requests.post(f"{url}/v1/requests/{request_id}/credentials", headers=agent, timeout=30)
    assert early.status_code == 409 and "mandatory delay" in early.json()["message"]
