"""What the kill-switch tests share: a broker on the real backends, agents' credentials."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import hvac
import psycopg
from hvac import exceptions as vault_errors

from broker.cli import main
from broker.guard.revocation import REVOCATION_POLICY_NAME
from broker.issuers.aws_accounts import AwsAccounts
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.moto import denied

AGENT, OTHER, ADMIN = "shop-bot", "other-bot", "ops"


def shop_broker(tmp_path: Path, backends: Backends, **settings: Any) -> Broker:
    """A broker on the backends' scope, with a second requester (other-bot) and the
    scope's S3 bucket holding one object."""
    scope = next(backends.scopes_dir.glob("*.yaml"))
    scope.write_text(
        scope.read_text().replace(
            "  - subject: agent:shop-bot",
            "  - subject: agent:shop-bot\n  - subject: agent:other-bot",
        )
    )
    backends.apply(yes=True)
    backends.admin("s3").create_bucket(Bucket=f"{backends.name}-prod-data")
    backends.admin("s3").put_object(Bucket=f"{backends.name}-prod-data", Key="a.txt", Body=b"a")
    broker = make_broker(tmp_path, real_issuers=backends.issuers, admins=("agent:ops",), **settings)
    # The kill switch reaches IAM with the broker's own AWS identity.
    broker.services.kill_switch.accounts = AwsAccounts(backends.sts)
    return broker


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def issue(broker: Broker, backends: Backends, agent: str, backend: str) -> dict[str, str]:
    body: dict[str, Any] = {
        "service": backends.name,
        "environment": "prod",
        "tier": "read",
        "backend": backend,
    }
    if backend == "aws":
        body["region"] = "us-east-1"
    response = broker.post("/v1/credentials", body, agent=agent)
    assert response.status_code == 200, response.json
    return dict(response.json["credentials"])


def vault_alive(backends: Backends, token: str) -> bool:
    try:
        hvac.Client(url=backends.bao.url, token=token, timeout=5).auth.token.lookup_self()
    except vault_errors.Forbidden:
        return False
    return True


def can_log_in(credentials: dict[str, str]) -> bool:
    url = "postgresql://{username}:{password}@{host}:{port}/{database}".format(**credentials)
    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def s3_reads(backends: Backends, credentials: dict[str, str]) -> bool:
    """Can these AWS credentials read the scope's object? False only when AWS refuses."""
    s3 = backends.moto.agent_client(credentials, "s3")
    return not denied(lambda: s3.get_object(Bucket=f"{backends.name}-prod-data", Key="a.txt"))


def wait_past_cutoff(backends: Backends, role: str) -> None:
    """Sleep until every revocation cut-off on ``role`` is in the past (sessions issued in
    a cut-off's second count as issued before it)."""
    document = backends.admin("iam").get_role_policy(
        RoleName=role, PolicyName=REVOCATION_POLICY_NAME
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    cutoffs = [
        dt.datetime.fromisoformat(
            s["Condition"]["DateLessThan"]["aws:TokenIssueTime"].replace("Z", "+00:00")
        ).timestamp()
        for s in document["Statement"]
    ]
    while time.time() < max(cutoffs):
        time.sleep(0.1)
