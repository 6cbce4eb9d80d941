"""`broker mcp --transport http`: streamable HTTP behind the agent's broker token, with
OAuth protected-resource metadata (RFC 9728), driven by the `mcp` package's own client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import requests
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.client.conftest import LiveBroker, free_port
from tests.client.mcp_tasks_client import TasksHost
from tests.client.test_mcp_server import WRITE, approve_when_shown

BROKER = str(Path(sys.executable).with_name("broker"))


@pytest.fixture()
def mcp_url(live: LiveBroker, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    environment = {
        **os.environ,
        "BROKER_URL": live.url,
        "HOME": str(tmp_path),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws" / "credentials"),
        "BROKER_OUTPUT_DIR": str(tmp_path / "out"),
    }
    environment.pop("BROKER_TOKEN", None)
    log = (tmp_path / "mcp-http.log").open("w")
    process = subprocess.Popen(
        [BROKER, "mcp", "--transport", "http", "--port", str(port)],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(10)
    log.close()


def test_the_endpoint_needs_an_agent_token_and_says_where_to_learn_how(
    live: LiveBroker, mcp_url: str
) -> None:
    metadata = requests.get(f"{mcp_url}/.well-known/oauth-protected-resource/mcp", timeout=5)
    assert metadata.status_code == 200
    body = metadata.json()
    assert body["resource"] == f"{mcp_url}/mcp"
    assert body["authorization_servers"] == [live.url]
    assert body["bearer_methods_supported"] == ["header"]
    hello = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}}
    anonymous = requests.post(f"{mcp_url}/mcp", json=hello, timeout=5)
    assert anonymous.status_code == 401
    challenge = anonymous.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer") and "oauth-protected-resource/mcp" in challenge
    forged = requests.post(
        f"{mcp_url}/mcp", json=hello, headers={"Authorization": "Bearer x.y.z"}, timeout=5
    )
    assert forged.status_code == 401


def test_an_agent_uses_the_tools_over_http_with_its_broker_token(
    live: LiveBroker, mcp_url: str, tmp_path: Path
) -> None:
    host = TasksHost(approve_when_shown(live))
    seen: dict[str, Any] = {}

    async def main() -> None:
        headers = {"Authorization": f"Bearer {live.token()}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            transport = streamable_http_client(f"{mcp_url}/mcp", http_client=http)
            async with Client(transport, extensions=[host], read_timeout_seconds=60) as client:
                seen["version"] = client.protocol_version
                scopes = await client.call_tool("list_my_scopes", {})
                seen["scopes"] = scopes.structured_content
                issued = await client.call_tool("request_elevation", WRITE)
                seen["issued"] = issued.structured_content

    anyio.run(main)
    assert seen["version"] == "2026-07-28"
    assert seen["scopes"]["agent"] == "agent:payments-copilot"
    assert seen["issued"]["status"] == "issued"
    assert host.polled[0]["status"] == "input_required"
    assert "[broker-payments-prod-write]" in (tmp_path / "aws" / "credentials").read_text()
