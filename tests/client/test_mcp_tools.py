"""The MCP tools' behaviour in-process (the stdio server is tested in test_mcp_server.py)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from broker_client import BrokerClient
from broker_client.mcp.arguments import CredentialsArguments, ElevationArguments, StatusArguments
from broker_client.mcp.tools import BrokerTools, Opened
from broker_client.mcp.writer import CredentialWriter

from tests.client.conftest import LiveBroker, free_port


@pytest.fixture()
def files(tmp_path: Path) -> CredentialWriter:
    return CredentialWriter(tmp_path / "aws" / "credentials", tmp_path / "out")


def read(**options: object) -> CredentialsArguments:
    return CredentialsArguments.model_validate(
        {"service": "payments", "environment": "prod", **options}
    )


def tools_for(
    live: LiveBroker, writer: CredentialWriter, agent: str = "payments-copilot"
) -> BrokerTools:
    return BrokerTools(live.client(agent, clock=live.clock), writer)


def test_nothing_is_issued_when_the_destination_cannot_be_written(
    live: LiveBroker, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    writer = CredentialWriter(tmp_path / "blocker" / "credentials", tmp_path / "out")
    result = tools_for(live, writer).request_credentials(read(region="us-east-1"))
    assert result["status"] == "error" and result["code"] == "write_failed"
    assert live.issuers["aws"].calls == [] and live.requests == []


def test_a_profile_the_user_wrote_is_refused(live: LiveBroker, files: CredentialWriter) -> None:
    files.aws_credentials_file.parent.mkdir(parents=True)
    files.aws_credentials_file.write_text("[default]\naws_access_key_id = AKIAUSER\n")
    tools = tools_for(live, files)
    refused = tools.request_credentials(read(region="us-east-1", profile="default"))
    assert refused == {
        "status": "error",
        "code": "invalid_argument",
        "message": "profile 'default' exists and was not written by the broker",
    }
    assert files.aws_credentials_file.read_text() == "[default]\naws_access_key_id = AKIAUSER\n"
    issued = tools.request_credentials(read(region="us-east-1"))
    assert issued["status"] == "issued"
    text = files.aws_credentials_file.read_text()
    assert text.startswith("[default]\naws_access_key_id = AKIAUSER\n\n[broker-payments-prod-read]")
    again = tools.request_credentials(read(region="eu-west-1"))
    assert again["ids"]["access_key_id"] != issued["ids"]["access_key_id"]
    assert files.aws_credentials_file.read_text().count("[broker-payments-prod-read]") == 1
    assert stat.S_IMODE(files.aws_credentials_file.stat().st_mode) == 0o600


def test_aws_credentials_can_go_to_an_env_file(live: LiveBroker, files: CredentialWriter) -> None:
    result = tools_for(live, files).request_credentials(
        read(region="us-east-1", env_file=True, profile="agent-aws")
    )
    assert result["written_to"]["kind"] == "env_file"
    path = Path(result["written_to"]["path"])
    assert path == files.output_dir / "agent-aws.env"
    assert "export AWS_SESSION_TOKEN=st-" in path.read_text()


def test_the_mandatory_delay_is_reported_then_collected(
    live: LiveBroker, files: CredentialWriter
) -> None:
    tools = tools_for(live, files, "ledger-maintainer")
    opened = tools.request_elevation(
        ElevationArguments(
            service="ledger",
            environment="prod",
            tier="delete",
            justification="purge the duplicated test entries",
            backend="database",
            resources=["ledger.entries"],
        )
    )
    assert isinstance(opened, Opened)
    pending = opened.outcome
    assert pending["status"] == "pending" and pending["approvals_required"] == 2
    assert pending["notified"] is False and "no approver was notified" in pending["message"]
    for approver in ("carol", "dave"):
        live.services.approvals.decide(pending["request_id"], approver, "approve", via="page")
    status = StatusArguments(request_id=pending["request_id"])
    waiting = tools.request_status(status)
    assert waiting["status"] == "approved" and waiting["collectable_in_seconds"] in (900, 901)
    assert waiting["message"] == "approved; the mandatory delay ends in 15:00"
    live.clock.advance(901)
    issued = tools.request_status(status)
    assert issued["status"] == "issued" and issued["tier"] == "delete"
    assert issued["ids"]["username"].startswith("v-agent-")
    env = files.output_dir / "broker-ledger-prod-delete-database.env"
    assert issued["written_to"]["path"] == str(env)
    assert "export PGPASSWORD=pw-" in env.read_text()


def test_status_of_unknown_or_malformed_requests(live: LiveBroker, files: CredentialWriter) -> None:
    tools = tools_for(live, files)
    unknown = tools.request_status(StatusArguments(request_id="req_" + "a" * 26))
    assert (unknown["status"], unknown["code"]) == ("error", "not_found")


def test_an_unreachable_broker_is_a_state(files: CredentialWriter) -> None:
    tools = BrokerTools(BrokerClient(f"http://127.0.0.1:{free_port()}", "t", timeout=2), files)
    assert tools.list_my_scopes()["status"] == "unreachable"
    assert tools.request_credentials(read())["code"] == "unreachable"


ELEVATION = {
    "service": "payments",
    "environment": "prod",
    "region": "us-east-1",
    "tier": "write",
    "justification": "remove the stray test object",
}


def test_an_elevation_can_carry_an_intent_inline_or_as_a_file(
    live: LiveBroker, files: CredentialWriter, tmp_path: Path
) -> None:
    tools = tools_for(live, files)
    operation = {"action": "s3:DeleteObject", "resource": "arn:aws:s3:::payments-prod-invoices/x"}
    base = ELEVATION
    opened = tools.request_elevation(
        ElevationArguments.model_validate({**base, "intent": {"operations": [operation]}})
    )
    assert isinstance(opened, Opened)
    summary = opened.outcome["intent"]
    assert (summary["tier"], summary["destructive"], summary["operations"]) == ("delete", 1, 1)
    record = live.services.store.get_request(opened.outcome["request_id"])
    assert record is not None and record.intent_sha256 == summary["sha256"]
    plan = tmp_path / "intent.json"
    plan.write_text(json.dumps({"operations": [operation]}))
    again = tools.request_elevation(
        ElevationArguments.model_validate({**base, "intent_file": str(plan)})
    )
    assert isinstance(again, Opened) and again.outcome["intent"] == summary
    refused = tools.request_elevation(
        ElevationArguments.model_validate(
            {**base, "intent_file": str(plan), "resources": [operation["resource"]]}
        )
    )
    assert refused["code"] == "invalid_argument" and "not both" in refused["message"]
    outside = {"action": "s3:DeleteBucket", "resource": "arn:aws:s3:::payments-prod-invoices"}
    refused = tools.request_elevation(
        ElevationArguments.model_validate({**base, "intent": {"operations": [outside]}})
    )
    assert refused["code"] == "intent_outside_scope", refused


def test_an_unreadable_intent_is_an_argument_error_naming_its_field(
    live: LiveBroker, files: CredentialWriter, tmp_path: Path
) -> None:
    """A file nested deeper than the JSON parser recurses, or an inline intent of no known
    form, is ``invalid_argument`` naming the argument (no exception reaches the host)."""
    tools = tools_for(live, files)
    base = ELEVATION
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    refused = tools.request_elevation(
        ElevationArguments.model_validate({**base, "intent_file": str(deep)})
    )
    assert (refused["code"], refused["field"]) == ("invalid_argument", "intent_file"), refused
    assert "nested too deeply" in refused["message"]
    refused = tools.request_elevation(
        ElevationArguments.model_validate({**base, "intent": {"steps": []}})
    )
    assert (refused["code"], refused["field"]) == ("invalid_argument", "intent"), refused
    assert "file" not in refused["message"], refused
    assert live.requests.count("POST /v1/credentials") == 0


@pytest.mark.timeout(30)
def test_an_intent_file_must_be_a_regular_file(
    live: LiveBroker, files: CredentialWriter, tmp_path: Path
) -> None:
    """The model names intent_file: a pipe (or /dev/stdin, the stdio transport's own
    stream) would block the server, so only a regular file is read."""
    tools = tools_for(live, files)
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for path in (str(pipe), "/dev/stdin"):
        refused = tools.request_elevation(
            ElevationArguments.model_validate({**ELEVATION, "intent_file": path})
        )
        assert (refused["code"], refused["field"]) == ("invalid_argument", "intent_file"), refused
        assert "not a regular file" in refused["message"], refused


def test_request_credentials_never_leaves_an_escalation_open(
    live: LiveBroker, files: CredentialWriter
) -> None:
    """The read tool with an intent that writes: the broker would open a write request
    with no justification for approvers to read; the tool withdraws it and says to use
    request_elevation."""
    tools = tools_for(live, files)
    operation = {"action": "s3:PutObject", "resource": "arn:aws:s3:::payments-prod-invoices/x"}
    refused = tools.request_credentials(
        read(region="us-east-1", intent={"operations": [operation]})
    )
    assert (refused["code"], refused["field"]) == ("invalid_argument", "intent"), refused
    assert "request_elevation" in refused["message"]
    [record] = live.services.store.list_requests(limit=5)
    assert record.status == "cancelled"
