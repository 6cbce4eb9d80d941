"""`broker mcp` as a process, driven by the `mcp` package's own client over stdio, on
protocol 2026-07-28 (tasks, URL-mode elicitation) and on the handshake revision before it."""

from __future__ import annotations

import json
import stat
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import boto3
import broker_client
import mcp_types as types
import pytest
from broker_client.mcp.writer import MANAGED_MARKER, replace_section
from mcp import Client, StdioServerParameters, stdio_client
from mcp_types.version import LATEST_PROTOCOL_VERSION

from tests.client.conftest import LiveBroker
from tests.client.mcp_tasks_client import TasksHost

BROKER = str(Path(sys.executable).with_name("broker"))
INVOICE = "arn:aws:s3:::payments-prod-invoices/2026/11/batch.csv"
WRITE = {
    "service": "payments",
    "environment": "prod",
    "tier": "write",
    "region": "us-east-1",
    "resources": [INVOICE],
    "justification": "re-upload the corrected November batch",
}


class Session:
    """Calls tools on a running MCP client; keeps every result the model would see."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.results: list[str] = []

    async def call(self, tool: str, ok: bool = True, **arguments: Any) -> dict[str, Any]:
        result = await self.client.call_tool(tool, arguments)
        self.results.append(result.model_dump_json())
        assert result.is_error is not ok, result.content
        assert isinstance(result.structured_content, dict)
        return result.structured_content


def serve(
    live: LiveBroker,
    tmp_path: Path,
    body: Callable[[Session], Awaitable[None]],
    agent: str = "payments-copilot",
    **client_options: Any,
) -> list[str]:
    """Run `broker mcp` against the live broker, run ``body``, return every result."""
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
            async with Client(transport, read_timeout_seconds=60, **client_options) as client:
                session = Session(client)
                try:
                    await body(session)
                finally:
                    results.extend(session.results)

    anyio.run(main)
    return results


@pytest.fixture()
def scan(secret_scan: Any, live: LiveBroker, tmp_path: Path) -> Callable[[list[str]], None]:
    """No tool result carries an issued secret or the approval page (that goes to the
    human through elicitation only); the suite-wide scan also reads the server's stderr."""
    secret_scan.watch(tmp_path / "mcp-stderr.log")

    def check(results: list[str]) -> None:
        text = "\n".join(results)
        assert results
        for secret in live.secrets():
            assert secret not in text
        assert f"{live.url}/requests/" not in text

    return check


def approve_when_shown(
    live: LiveBroker, approver: str = "alice"
) -> Callable[[dict[str, Any]], Awaitable[str]]:
    """The human: opens the page the elicitation names, and an approver approves there."""

    async def human(params: dict[str, Any]) -> str:
        assert params["mode"] == "url"
        request_id = params["url"].rsplit("/", 1)[1]
        assert params["url"] == f"{live.url}/requests/{request_id}"
        assert params["elicitationId"] == request_id
        await anyio.to_thread.run_sync(
            lambda: live.services.approvals.decide(request_id, approver, "approve", via="page")
        )
        return "accept"

    return human


def test_the_server_speaks_the_latest_protocol_and_names_its_version(
    live: LiveBroker, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    async def body(session: Session) -> None:
        seen["version"] = session.client.protocol_version
        seen["server"] = session.client.server_info
        seen["tools"] = [t.name for t in (await session.client.list_tools()).tools]
        scopes = await session.call("list_my_scopes")
        assert [s["service"] for s in scopes["scopes"]] == ["payments"]

    serve(live, tmp_path, body)
    assert seen["version"] == LATEST_PROTOCOL_VERSION == "2026-07-28"
    assert seen["server"].name == "agent-credential-broker"
    assert seen["server"].version == broker_client.__version__ != ""
    assert sorted(seen["tools"]) == [
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
        assert issued["written_to"]["profile"] == "broker-payments-prod-read"

    scan(serve(live, tmp_path, body))
    credentials = tmp_path / "aws" / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert MANAGED_MARKER in credentials.read_text()
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    found = boto3.Session(profile_name="broker-payments-prod-read").get_credentials()
    assert found is not None
    secret_key, session_token = live.issuers["aws"].secrets_issued
    assert found.get_frozen_credentials().secret_key == secret_key


def test_an_elevation_is_a_task_and_the_page_reaches_the_human_by_url_elicitation(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    host = TasksHost(approve_when_shown(live))

    async def body(session: Session) -> None:
        issued = await session.call("request_elevation", profile="payments-write", **WRITE)
        assert issued["status"] == "issued" and issued["tier"] == "write"
        assert issued["written_to"]["profile"] == "payments-write"

    scan(serve(live, tmp_path, body, extensions=[host]))
    [created] = host.created
    assert created["status"] == "input_required" and created["resultType"] == "task"
    statuses = [p["status"] for p in host.polled]
    assert statuses[0] == "input_required" and statuses[-1] == "completed"
    assert "inputRequests" in host.polled[0]
    assert "[payments-write]" in (tmp_path / "aws" / "credentials").read_text()


def test_cancelling_the_task_withdraws_the_request(live: LiveBroker, tmp_path: Path) -> None:
    async def decline(params: dict[str, Any]) -> str:
        return "decline"

    host = TasksHost(decline, cancel_after=2)

    async def body(session: Session) -> None:
        result = await session.client.call_tool("request_elevation", WRITE)
        assert result.is_error

    serve(live, tmp_path, body, extensions=[host])
    assert host.polled[-1]["status"] == "cancelled"
    [record] = live.services.store.list_requests(statuses=["cancelled"])
    assert record.reason == "withdrawn by the agent"


def test_a_host_without_tasks_gets_the_page_by_elicitation_and_polls(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    shown: list[types.ElicitRequestURLParams] = []

    async def on_elicit(context: Any, params: Any) -> types.ElicitResult:
        shown.append(params)
        return types.ElicitResult(action="accept")

    for mode in ("auto", "legacy"):  # 2026-07-28 (input required) and 2025-11-25 (a request)
        shown.clear()

        async def body(session: Session) -> None:
            pending = await session.call("request_elevation", **WRITE)
            assert (pending["status"], pending["code"]) == ("pending", "pending")
            request_id = pending["request_id"]
            assert pending["approvals_required"] == 1
            await anyio.to_thread.run_sync(
                lambda: live.services.approvals.decide(request_id, "alice", "approve", via="page")
            )
            issued = await session.call("request_status", request_id=request_id, wait_seconds=5)
            assert issued["status"] == "issued"

        scan(serve(live, tmp_path, body, mode=mode, elicitation_callback=on_elicit))
        [params] = shown
        assert params.mode == "url" and params.url.startswith(f"{live.url}/requests/req_")


def test_every_refusal_is_structured_with_a_code_and_a_sentence(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    async def body(session: Session) -> None:
        short = await session.call(
            "request_elevation", ok=False, **{**WRITE, "justification": "fix"}
        )
        assert (short["status"], short["code"], short["field"]) == (
            "error",
            "invalid_argument",
            "justification",
        )
        assert "say why in one or two sentences" in short["message"]
        assert "pydantic" not in json.dumps(short)
        bad_id = await session.call("request_status", ok=False, request_id="../etc")
        assert (bad_id["code"], bad_id["field"]) == ("invalid_argument", "request_id")
        unknown = await session.call(
            "request_credentials", ok=False, service="nope", environment="prod", region="us-east-1"
        )
        assert (unknown["status"], unknown["code"]) == ("denied", "out_of_scope")
        assert unknown["message"] == "no scope for service 'nope'"
        injected = await session.call(
            "request_credentials",
            ok=False,
            service="payments",
            environment="prod",
            region="us-east-1",
            profile="x]\n[default",
        )
        assert injected["code"] == "invalid_argument"
        pending = await session.call("request_elevation", **WRITE)
        await anyio.to_thread.run_sync(
            lambda: live.services.approvals.decide(
                pending["request_id"], "bob", "deny", via="page", reason="use staging"
            )
        )
        denied = await session.call("request_status", ok=False, request_id=pending["request_id"])
        assert (denied["status"], denied["code"]) == ("denied", "denied")
        assert denied["message"] == "denied by bob: use staging"
        await anyio.to_thread.run_sync(live.freeze)
        frozen = await session.call(
            "request_credentials",
            ok=False,
            service="payments",
            environment="prod",
            region="us-east-1",
        )
        assert frozen["code"] == "frozen" and "kill switch drill" in frozen["message"]

    scan(serve(live, tmp_path, body))
    assert not (tmp_path / "aws" / "credentials").exists()  # nothing was issued


def test_a_missing_or_malformed_argument_is_not_out_of_scope(
    live: LiveBroker, tmp_path: Path, scan: Callable[[list[str]], None]
) -> None:
    """``out_of_scope`` tells the model not to retry: it is for what the agent may not have
    (no such scope, region, resource), never for an argument it can correct."""

    async def body(session: Session) -> None:
        base = {"service": "payments", "environment": "prod"}
        no_region = await session.call("request_credentials", ok=False, **base)
        assert (no_region["code"], no_region["field"]) == ("invalid_argument", "region")
        assert no_region["status"] == "error" and "region is required" in no_region["message"]
        upper = await session.call(
            "request_credentials", ok=False, **{**base, "service": "Payments"}, region="us-east-1"
        )
        assert (upper["code"], upper["field"]) == ("invalid_argument", "service"), upper
        far = await session.call("request_credentials", ok=False, **base, region="ap-south-1")
        assert (far["status"], far["code"]) == ("denied", "out_of_scope"), far
        outside = await session.call(
            "request_elevation", ok=False, **{**WRITE, "resources": ["arn:aws:s3:::other/x"]}
        )
        assert (outside["code"], outside["field"]) == ("out_of_scope", "resources"), outside

    scan(serve(live, tmp_path, body))


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
    assert "export VAULT_TOKEN=hvs." in env_file.read_text()


def test_profiles_the_broker_did_not_write_are_never_replaced() -> None:
    user = "[default]\naws_access_key_id = AKIAUSER\n# mine\n\n[other]\nregion = x\n"
    body = [f"{MANAGED_MARKER}\n", "aws_access_key_id = ASIA1\n"]
    added = replace_section(user, "broker-a", body)
    assert added == user + "\n[broker-a]\n" + "".join(body)
    with pytest.raises(ValueError, match="not written by the broker"):
        replace_section(user, "default", body)


_ = threading
