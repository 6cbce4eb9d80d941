"""`broker dev`: starts the whole stack, serves an issuance end to end, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import requests

from broker.devstack.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(state: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "dev",
            "--port",
            str(port),
            "--scopes",
            str(ROOT / "scopes"),
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 120) -> dict[str, str]:
    """Lines until one starting with ``marker``; KEY=VALUE lines are collected."""
    assert process.stdout is not None
    values: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
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
