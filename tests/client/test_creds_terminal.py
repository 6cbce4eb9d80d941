"""Issue 16: a `credential_process` profile for write blocked 25 s with nothing on screen.

The AWS SDK captures the process's stderr; `broker creds` writes the wait to the
terminal itself. A real boto3 runs in a pseudo-terminal here, as in a developer's shell.
"""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

from tests.client.conftest import LiveBroker
from tests.client.test_creds_cli import BROKER

SCRIPT = """
import boto3
found = boto3.Session(profile_name="write").get_credentials().get_frozen_credentials()
print("GOT", found.access_key)
"""


def read_until(fd: int, needle: bytes, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_the_wait_shows_on_the_terminal_while_the_sdk_waits(
    live: LiveBroker, tmp_path: Path
) -> None:
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile write]\n"
        f"credential_process = {BROKER} creds --service payments --environment prod "
        "--region us-east-1 --tier write --resource "
        "arn:aws:s3:::payments-prod-invoices/2026/11/batch.csv --justification "
        "re-upload-the-corrected-batch --format credential-process\n"
    )
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "BROKER_URL": live.url,
        "BROKER_TOKEN": live.token(),
        "BROKER_CACHE_DIR": str(tmp_path / "cache"),
        "TERM": "dumb",
    }
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a shell user's python running boto3
        os.execve(sys.executable, [sys.executable, "-c", SCRIPT], environment)
    try:
        shown = read_until(terminal, b"pending 0/1 approvals", 60)
        assert b"needs 1 approval(s)" in shown and b"pending 0/1 approvals" in shown, shown
        record = live.pending()
        live.services.approvals.decide(record.id, "alice", "approve", via="page")
        decided = time.monotonic()
        shown += read_until(terminal, b"GOT ASIATEST", 60)
        assert time.monotonic() - decided < 20  # the long poll did not sleep its 30 s out
        assert b"GOT ASIATEST" in shown, shown
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
