"""`broker dev`: starts the whole stack, serves an issuance end to end, stops cleanly."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import hvac
import requests
import yaml

from broker.devstack.processes import free_port
from tests.approvals.flows import csrf_from
from tests.fixtures.moto import denied

ROOT = Path(__file__).resolve().parents[2]


def start(state: Path, port: int, scopes: Path = ROOT / "scopes") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "dev",
            "--port",
            str(port),
            "--scopes",
            str(scopes),
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


def read_until(
    process: subprocess.Popen[str],
    marker: str,
    timeout: float = 120,
    seen: list[str] | None = None,
) -> dict[str, str]:
    """Lines until one starting with ``marker``; KEY=VALUE lines are collected (and every
    line appended to ``seen``)."""
    assert process.stdout is not None
    values: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if seen is not None:
            seen.append(line)
        if not line:
            raise AssertionError(f"broker dev exited early with {process.wait()}")
        if "=" in line and line.split("=", 1)[0].isupper():
            key, value = line.strip().split("=", 1)
            values[key] = value
        if line.startswith(marker):
            return values
    raise AssertionError(f"no '{marker}' within {timeout}s")


def test_dev_stack_serves_an_issuance_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    first = start(tmp_path / "state", port)
    try:
        values = read_until(first, "BROKER_TOKEN=")
        url, token = values["BROKER_URL"], values["BROKER_TOKEN"]
        assert url == f"http://127.0.0.1:{port}"
        response = requests.post(
            f"{url}/v1/credentials",
            timeout=30,
            json={
                "service": "payments",
                "environment": "prod",
                "region": "us-east-1",
                "tier": "read",
                "backend": "aws",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        credentials = response.json()["credentials"]
        config = (tmp_path / "state" / "broker.yaml").read_text()
        moto_url = config.split("endpoint_url: ", 1)[1].split("\n", 1)[0].strip()
        s3 = boto3.client(
            "s3",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"],
            aws_session_token=credentials["session_token"],
        )
        body = s3.get_object(Bucket="payments-prod-invoices", Key="README.txt")["Body"].read()
        assert body.startswith(b"demo object")

        second = start(tmp_path / "state", free_port())
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1
        assert f"a broker dev stack is already running: pid {first.pid} at {url}" in output
    finally:
        os.killpg(first.pid, signal.SIGINT)
        remaining, _ = first.communicate(timeout=60)
    assert first.returncode == 0
    assert remaining.rstrip().endswith("stopped.")
    # Everything it started is gone: the broker's port is free again.
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        raise AssertionError("the broker still answers after Ctrl-C")
    except requests.ConnectionError:
        pass


def _scopes_without_freezes(tmp_path: Path) -> Path:
    """The example scopes, less their change freezes (a test must not depend on the date)."""
    target = tmp_path / "scopes"
    target.mkdir()
    for path in sorted((ROOT / "scopes").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        document.pop("freezes", None)
        (target / path.name).write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def _operator_env(state: Path) -> dict[str, str]:
    """What `source .broker/dev/env` exports, for operator commands."""
    env = dict(os.environ)
    for line in (state / "env").read_text().splitlines():
        if line.startswith("export "):
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value
    return env


def _cli(state: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        env=_operator_env(state),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Agent:
    def __init__(self, url: str, token: str, moto_url: str) -> None:
        self.url, self.token, self.moto_url = url, token, moto_url

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(
            f"{self.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def credentials(self, **body: Any) -> dict[str, str]:
        response = self.post("/v1/credentials", {"environment": "prod", "backend": "aws", **body})
        assert response.status_code == 200, response.text
        return dict(response.json()["credentials"])

    def aws(self, credentials: dict[str, str], service: str, region: str = "us-east-1") -> Any:
        make: Any = boto3.client
        return make(
            service,
            endpoint_url=self.moto_url,
            region_name=region,
            aws_access_key_id=credentials["access_key_id"],
            aws_secret_access_key=credentials["secret_access_key"],
            aws_session_token=credentials["session_token"],
        )


def _approve(link: str) -> None:
    """Alice opens her personal link and presses Approve."""
    browser = requests.Session()
    page = browser.get(link, timeout=30)
    assert page.status_code == 200, page.text[:300]
    decided = browser.post(
        link, data={"csrf_token": csrf_from(page.text), "decision": "approve"}, timeout=30
    )
    assert decided.status_code == 200, decided.text[:300]


def _cutoff(state: Path, role: str) -> float:
    """The latest revocation cut-off on a payments role (read as the broker's admin role)."""
    env = _operator_env(state)
    moto_url = _moto_url(state)
    sts = boto3.client(
        "sts",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    admin = sts.assume_role(
        RoleArn="arn:aws:iam::111111111111:role/broker-admin", RoleSessionName="dev-test"
    )["Credentials"]
    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id=admin["AccessKeyId"],
        aws_secret_access_key=admin["SecretAccessKey"],
        aws_session_token=admin["SessionToken"],
    )
    document = iam.get_role_policy(RoleName=role, PolicyName="broker-revoked-sessions")
    body = document["PolicyDocument"]
    parsed = json.loads(body) if isinstance(body, str) else body
    return max(
        dt.datetime.fromisoformat(
            s["Condition"]["DateLessThan"]["aws:TokenIssueTime"].replace("Z", "+00:00")
        ).timestamp()
        for s in parsed["Statement"]
    )


def _moto_url(state: Path) -> str:
    config = (state / "broker.yaml").read_text()
    return config.split("endpoint_url: ", 1)[1].split("\n", 1)[0].strip()


def test_dev_stack_enforces_narrowing_and_the_kill_switch(tmp_path: Path) -> None:
    """As a newcomer tries it: read, an approved narrow write, DynamoDB and CloudFormation
    reads, then a kill switch and `broker unfreeze`, all enforced by the AWS stand-in."""
    state = tmp_path / "state"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    process = start(state, busy, _scopes_without_freezes(tmp_path))
    try:
        seen: list[str] = []
        values = read_until(process, "BROKER_TOKEN=", seen=seen)
        taken.close()
        # The asked-for port was taken: it says so, and uses another.
        notice = next(line for line in seen if line.startswith(f"port {busy} is in use"))
        assert values["BROKER_URL"] != f"http://127.0.0.1:{busy}"
        assert values["BROKER_URL"].rsplit(":", 1)[1] in notice
        # What it writes is the user's only: the config, the store, the logs (OpenBao's
        # holds its root token), the operator's environment file.
        private = [state / "broker.yaml", state / "broker.db", state / "env"]
        private += sorted((state / "logs").glob("*.log"))
        assert len(private) >= 6
        loose = [str(p) for p in private if p.stat().st_mode & 0o077]
        assert not loose
        config = str(state / "broker.yaml")
        agent = Agent(values["BROKER_URL"], values["BROKER_TOKEN"], _moto_url(state))
        bucket = "payments-prod-invoices"
        read = agent.credentials(service="payments", region="us-east-1", tier="read")
        s3 = agent.aws(read, "s3")
        assert s3.get_object(Bucket=bucket, Key="README.txt")["Body"].read().startswith(b"demo")
        assert denied(lambda: s3.put_object(Bucket=bucket, Key="2026/x", Body=b"x"))
        ledger = agent.aws(read, "dynamodb")
        item = ledger.get_item(TableName="payments-prod-ledger", Key={"id": {"S": "demo"}})
        assert item["Item"]["note"] == {"S": "demo item"}
        assert denied(
            lambda: ledger.put_item(TableName="payments-prod-ledger", Item={"id": {"S": "x"}})
        )
        # The session was asked for us-east-1: the same table in eu-west-1 is outside it.
        other_region = agent.aws(read, "dynamodb", "eu-west-1")
        assert denied(
            lambda: other_region.get_item(
                TableName="payments-prod-ledger", Key={"id": {"S": "demo"}}
            )
        )

        # A write approved on 2026/*: it writes there and nowhere else, and reads nothing.
        opened = agent.post(
            "/v1/credentials",
            {
                "service": "payments",
                "environment": "prod",
                "region": "us-east-1",
                "tier": "write",
                "backend": "aws",
                "resources": [f"arn:aws:s3:::{bucket}/2026/*"],
                "justification": "upload the corrected invoices",
            },
        )
        assert opened.status_code == 202, opened.text
        request_id = opened.json()["request_id"]
        link = (
            _cli(
                state,
                "approvals",
                "link",
                "--config",
                config,
                "--approver",
                "alice",
                "--request",
                request_id,
            )
            .strip()
            .splitlines()[-1]
        )
        _approve(link)
        collected = agent.post(f"/v1/requests/{request_id}/credentials")
        assert collected.status_code == 200, collected.text
        write = agent.aws(collected.json()["credentials"], "s3")
        write.put_object(Bucket=bucket, Key="2026/11/invoice.pdf", Body=b"%PDF")
        assert denied(lambda: write.put_object(Bucket=bucket, Key="2025/x", Body=b"x"))
        assert denied(lambda: write.get_object(Bucket=bucket, Key="README.txt"))

        # The dev KV store is seeded: a read token has something to read.
        kv = agent.post(
            "/v1/credentials",
            {"service": "payments", "environment": "prod", "tier": "read", "backend": "vault"},
        )
        assert kv.status_code == 200, kv.text
        secret = hvac.Client(
            url=kv.json()["credentials"]["vault_addr"], token=kv.json()["credentials"]["token"]
        ).secrets.kv.v2.read_secret_version(
            path="payments/prod/demo", mount_point="secret", raise_on_deleted_version=True
        )
        assert secret["data"]["data"]["note"] == "demo secret of payments/prod"

        # The deploy pipeline's agent: its CloudFormation reads work.
        release = Agent(
            agent.url,
            _cli(state, "token", "mint", "--config", config, "--agent", "release-bot").strip(),
            agent.moto_url,
        )
        deploy = release.aws(
            release.credentials(service="deploy", region="us-east-1", tier="read"),
            "cloudformation",
        )
        assert deploy.list_stacks()["StackSummaries"] == []
        deploy.validate_template(TemplateBody=json.dumps({"Resources": {}}))
        assert denied(lambda: deploy.delete_stack(StackName="acme-prod-web"))

        # The circuit breaker trips on repeated refusals; its alert shows in this terminal.
        for _ in range(5):
            refused = release.post(
                "/v1/credentials",
                {
                    "service": "deploy",
                    "environment": "prod",
                    "region": "ap-south-1",
                    "tier": "read",
                    "backend": "aws",
                },
            )
            assert refused.status_code in (400, 403, 404), refused.text
        alert: list[str] = []
        read_until(process, "ALERT", timeout=20, seen=alert)
        assert "agent:release-bot was frozen by the circuit breaker" in alert[-1]
        listing = _cli(state, "freezes")
        assert "agent agent:release-bot" in listing and "by circuit-breaker" in listing

        # The kill switch ends the payments sessions; after `broker unfreeze`, new ones work.
        reason = ["--reason", "dev stack test"]
        _cli(state, "revoke", "--service", "payments", "--environment", "prod", *reason)
        # Its alert, raised by the command in another shell, shows in this terminal too.
        alert.clear()
        read_until(process, "ALERT", timeout=20, seen=alert)
        assert "Kill switch: service payments/prod revoked by cli:" in alert[-1], alert
        # The kill switch anchored the audit chain in moto's Object Lock bucket.
        verified = _cli(state, "audit", "verify", "--config", config)
        assert "the hash chain is intact" in verified and "anchored record(s) match" in verified
        assert " 0 anchor(s)" not in verified
        assert denied(lambda: s3.get_object(Bucket=bucket, Key="README.txt"))
        assert denied(lambda: write.put_object(Bucket=bucket, Key="2026/y", Body=b"y"))
        frozen = agent.post(
            "/v1/credentials",
            {
                "service": "payments",
                "environment": "prod",
                "region": "us-east-1",
                "tier": "read",
                "backend": "aws",
            },
        )
        assert frozen.status_code == 403, frozen.text
        _cli(state, "unfreeze", "--service", "payments", "--environment", "prod", *reason)
        cutoff = _cutoff(state, "payments-prod-read")
        while time.time() < cutoff + 1:  # the broker's freeze cache and the cut-off's second
            time.sleep(0.2)
        fresh = agent.aws(
            agent.credentials(service="payments", region="us-east-1", tier="read"), "s3"
        )
        assert fresh.get_object(Bucket=bucket, Key="README.txt")["Body"].read().startswith(b"demo")
        assert denied(lambda: s3.get_object(Bucket=bucket, Key="README.txt"))
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=60)
