"""`broker mcp` as a process, driven by the official MCP SDK's client over stdio."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import boto3
import pytest
from broker_client.mcp.writer import MANAGED_MARKER, replace_section
from mcp import Client, StdioServerParameters, stdio_client
from mcp.types import CallToolResult

from tests.client.conftest import LiveBroker

BROKER = str(Path(sys.executable).with_name("broker"))
INVOICE = "arn:aws:s3:::payments-prod-invoices/2026/11/batch.csv"


class Session:
    """Calls tools on a running MCP client; keeps every result for the secret check."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.results: list[str] = []

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result: CallToolResult = await self.client.call_tool(tool, arguments)
        self.results.append(result.model_dump_json())
        assert not result.is_error, result.content
        assert isinstance(result.structured_content, dict)
        return result.structured_content


def serve(
    live: LiveBroker,
    tmp_path: Path,
    body: Callable[[Session], Awaitable[None]],
    agent: str = "payments-copilot",
) -> list[str]:
    """Run ``broker mcp`` against the live broker, run ``body``, return every result.

    The server's stderr goes to ``tmp_path/mcp-stderr.log`` (the secret scan reads it).
    """
    log = tmp_path / "mcp-stderr.log"
    parameters = StdioServerParameters(
        command=BROKER,
        args=["mcp", "--url", live.url],
        env={
            "BROKER_TOKEN": live.token(agent),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws" / "credentials"),
            "BROKER_OUTPUT_DIR": str(tmp_path / "out"),
            "HOME": str(tmp_path),
        },
    )
    results: list[str] = []

    async def main() -> None:
        with log.open("w") as errlog:
            transport = stdio_client(parameters, errlog=errlog)
            async with Client(transport, read_timeout_seconds=60) as client:
                session = Session(client)
                try:
                    await body(session)
                finally:
                    results.extend(session.results)

    anyio.run(main)
    return results


@pytest.fixture()
def scan(secret_scan: Any, live: LiveBroker, tmp_path: Path) -> Callable[[list[str]], None]:
    """Assert that no tool result carries an issued secret; the suite-wide scan also
    reads the server's stderr."""
    secret_scan.watch(tmp_path / "mcp-stderr.log")

    def check(results: list[str]) -> None:
        text = "\n".join(results)
        assert results
        for secret in live.secrets():
            assert secret not in text

    return check


def test_the_four_tools_are_listed(live: LiveBroker, tmp_path: Path) -> None:
    names: list[str] = []

    async def body(session: Session) -> None:
        listing = await session.client.list_tools()
        names.extend(tool.name for tool in listing.tools)
        scopes = await session.call("list_my_scopes")
        assert scopes["status"] == "ok"
        assert [s["service"] for s in scopes["scopes"]] == ["payments"]

    serve(live, tmp_path, body)
    assert sorted(names) == [
        "list_my_scopes",
        "request_credentials",
        "request_elevation",
        "request_status",
    ]


def test_read_credentials_go_to_a_profile_not_to_the_model(
    live: LiveBroker,
    tmp_path: Path,
    scan: Callable[[list[str]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def body(session: Session) -> None:
        issued = await session.call(
            "request_credentials", service="payments", environment="prod", region="us-east-1"
        )
        assert issued["status"] == "issued" and issued["tier"] == "read"
        assert issued["ids"]["access_key_id"].startswith("ASIATEST")
        assert issued["written_to"]["kind"] == "aws_profile"
        assert issued["written_to"]["profile"] == "broker-payments-prod-read"

    results = serve(live, tmp_path, body)
    scan(results)
    credentials = tmp_path / "aws" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    text = credentials.read_text()
    assert "[broker-payments-prod-read]" in text and MANAGED_MARKER in text
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    found = boto3.Session(profile_name="broker-payments-prod-read").get_credentials()
    assert found is not None
    secret_key, session_token = live.issuers["aws"].secrets_issued
    assert found.get_frozen_credentials().secret_key == secret_key
    assert found.get_frozen_credentials().token == session_token


def test_an_elevation_is_pending_then_issued_after_approval(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    async def body(session: Session) -> None:
        pending = await session.call(
            "request_elevation",
            service="payments",
            environment="prod",
            tier="write",
            region="us-east-1",
            resources=[INVOICE],
            justification="re-upload the corrected November batch",
            profile="payments-write",
        )
        assert pending["status"] == "pending"
        assert (pending["approvals_required"], pending["approvals_received"]) == (1, 0)
        request_id = pending["request_id"]
        assert pending["approval_url"] == f"{live.url}/requests/{request_id}"
        still = await session.call("request_status", request_id=request_id)
        assert still["status"] == "pending"
        await anyio.to_thread.run_sync(
            lambda: live.services.approvals.decide(request_id, "alice", "approve", via="page")
        )
        issued = await session.call("request_status", request_id=request_id, wait_seconds=5)
        assert issued["status"] == "issued" and issued["tier"] == "write"
        assert issued["written_to"]["profile"] == "payments-write"
        again = await session.call("request_status", request_id=request_id)
        assert again["status"] == "collected"
        assert again["written_to"] == issued["written_to"]

    results = serve(live, tmp_path, body)
    scan(results)
    assert "[payments-write]" in (tmp_path / "aws" / "credentials").read_text()


def test_denied_frozen_and_bad_input_are_states(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    async def body(session: Session) -> None:
        pending = await session.call(
            "request_elevation",
            service="payments",
            environment="prod",
            tier="write",
            region="us-east-1",
            resources=[INVOICE],
            justification="re-upload the corrected November batch",
        )
        await anyio.to_thread.run_sync(
            lambda: live.services.approvals.decide(
                pending["request_id"], "bob", "deny", via="page", reason="use staging"
            )
        )
        denied = await session.call("request_status", request_id=pending["request_id"])
        assert denied["status"] == "denied"
        assert denied["reason"] == "denied by bob: use staging"
        unknown = await session.call(
            "request_credentials", service="nope", environment="prod", region="us-east-1"
        )
        assert unknown == {
            "status": "error",
            "error": "not_found",
            "reason": "no scope for service 'nope'",
            "field": "service",
        }
        injected = await session.call(
            "request_credentials",
            service="payments",
            environment="prod",
            region="us-east-1",
            profile="x]\n[default",
        )
        assert injected["status"] == "error" and injected["error"] == "invalid_argument"
        await anyio.to_thread.run_sync(live.freeze)
        frozen = await session.call(
            "request_credentials", service="payments", environment="prod", region="us-east-1"
        )
        assert frozen["status"] == "frozen" and "kill switch drill" in frozen["reason"]

    scan(serve(live, tmp_path, body))
    assert not (tmp_path / "aws" / "credentials").exists()  # nothing was issued


def test_vault_credentials_go_to_an_env_file(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    async def body(session: Session) -> None:
        issued = await session.call(
            "request_credentials", service="ledger", environment="prod", backend="vault"
        )
        assert issued["written_to"]["kind"] == "env_file"
        assert issued["ids"] == {"vault_addr": "http://127.0.0.1:8200", "accessor": "acc-0"}

    scan(serve(live, tmp_path, body, agent="ledger-maintainer"))
    env_file = tmp_path / "out" / "broker-ledger-prod-read-vault.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert "export VAULT_TOKEN=hvs." in env_file.read_text()


def test_profiles_the_broker_did_not_write_are_never_replaced() -> None:
    user = "[default]\naws_access_key_id = AKIAUSER\n# mine\n\n[other]\nregion = x\n"
    body = [f"{MANAGED_MARKER}\n", "aws_access_key_id = ASIA1\n"]
    added = replace_section(user, "broker-a", body)
    assert added == user + "\n[broker-a]\n" + "".join(body)
    replaced = replace_section(added, "broker-a", [f"{MANAGED_MARKER}\n", "k = 2\n"])
    assert replaced == user + f"\n[broker-a]\n{MANAGED_MARKER}\nk = 2\n"
    middle = replace_section(
        f"[broker-a]\n{MANAGED_MARKER}\nk = 1\n\n[other]\nx = 1\n", "broker-a", body
    )
    assert middle == f"[broker-a]\n{''.join(body)}\n[other]\nx = 1\n"
    with pytest.raises(ValueError, match="not written by the broker"):
        replace_section(user, "default", body)
    assert json.dumps(replace_section("", "p", ["a = 1\n"])) == json.dumps("[p]\na = 1\n")
