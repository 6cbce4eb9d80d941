"""The incident, replayed end to end: an agent with read access to a prod service decides to
"delete and recreate" it.

Real backends throughout: moto with IAM enforcement (the agent's AWS session is the
broker's read tier role), PostgreSQL through the agent's broker-issued database login,
OpenBao KV through its broker-issued token. The agent tries every destructive call it
can, then escalates to the broker for ``delete``; that request waits for two humans and
the mandatory delay (the broker's clock is injected, so the delay passes without
waiting); an operator pulls the kill switch with `broker revoke`, after which nothing the
agent holds or asks for works. The test prints a table of every attempted operation and
whether it was blocked (``pytest -s`` shows it); the table is also written to a file and
attached to the test report as the ``incident_table`` property.

The local AWS stand-in evaluates as AWS does (docs/local-stack.md): the AWS refusals
below hold because the read role and its session policy lack the actions, and after the
revoke because the broker's revocation policy denies sessions issued before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import hvac
import psycopg
import pytest
from botocore.exceptions import ClientError
from flask.testing import FlaskClient
from hvac import exceptions as vault_errors

from broker.guard.guard import FREEZE_CACHE_SECONDS
from broker.guard.revocation import REVOCATION_POLICY_NAME
from tests.approvals.flows import csrf_from
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.moto import ACCOUNT

AGENT = "shop-bot"
DELAY = 600  # the delete tier's mandatory delay (10m) in the test scope
TEMPLATE = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})


@dataclass(frozen=True)
class Attempt:
    step: int
    actor: str
    operation: str
    through: str
    outcome: str
    blocked: bool


@dataclass
class Ledger:
    """Every operation tried, in order, with what happened."""

    rows: list[Attempt] = field(default_factory=list)

    def record(self, actor: str, operation: str, through: str, outcome: str, blocked: bool) -> None:
        self.rows.append(Attempt(len(self.rows) + 1, actor, operation, through, outcome, blocked))

    def refused(
        self, operation: str, through: str, call: Callable[[], object], actor: str = AGENT
    ) -> str:
        """Run ``call``, which must fail; record and return its error."""
        try:
            call()
        except (ClientError, psycopg.Error, vault_errors.VaultError) as e:
            outcome = _error(e)
            self.record(actor, operation, through, outcome, True)
            return outcome
        self.record(actor, operation, through, "SUCCEEDED", False)
        raise AssertionError(f"{operation} through {through} was not refused")

    def allowed(self, operation: str, through: str, call: Callable[[], object]) -> None:
        """A control: the same credentials do what their tier grants."""
        call()
        self.record(AGENT, operation, through, "ok (granted by the read tier)", False)

    def table(self) -> str:
        headers = ("#", "actor", "operation", "through", "outcome", "blocked")
        cells = [
            (str(r.step), r.actor, r.operation, r.through, r.outcome, "yes" if r.blocked else "-")
            for r in self.rows
        ]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

        def line(values: tuple[str, ...]) -> str:
            return " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

        rule = "-+-".join("-" * w for w in widths)
        blocked = sum(r.blocked for r in self.rows)
        return "\n".join(
            [
                line(headers),
                rule,
                *(line(c) for c in cells),
                "",
                f"{len(self.rows)} operations attempted, {blocked} blocked.",
            ]
        )


def _error(error: Exception) -> str:
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "error"))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == str(status) and "AccessDenied" in str(error):
            # moto answers JSON-protocol services (DynamoDB) with an XML AccessDenied,
            # which botocore reports under the HTTP status as its code.
            code = "AccessDenied"
        return f"{code} (HTTP {status})"
    if isinstance(error, psycopg.Error):
        message = str(error).splitlines()[0]
        return f"{type(error).__name__}: {message.split('FATAL:')[-1].strip()}"
    return f"{type(error).__name__} (HTTP {_vault_status(error)})"


def _vault_status(error: Exception) -> int:
    return {vault_errors.Forbidden: 403, vault_errors.InvalidPath: 404}.get(type(error), 0)


# -- the prod service -------------------------------------------------------------------


@dataclass(frozen=True)
class Prod:
    bucket: str
    table: str
    stack: str
    stack_id: str
    secret_path: str


def build_prod(backends: Backends) -> Prod:
    """What the agent will try to destroy, created by an administrator."""
    name = backends.name
    prod = Prod(
        bucket=f"{name}-prod-data",
        table=f"{name}-prod-orders",
        stack=f"{name}-prod-web",
        stack_id="",
        secret_path=f"{name}/prod/api",
    )
    s3 = backends.admin("s3")
    s3.create_bucket(Bucket=prod.bucket)
    s3.put_object(Bucket=prod.bucket, Key="orders/1.json", Body=b"{}")
    backends.admin("dynamodb").create_table(
        TableName=prod.table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
    )
    stack_id = backends.admin("cloudformation").create_stack(
        StackName=prod.stack, TemplateBody=TEMPLATE
    )["StackId"]
    backends.vault_client.secrets.kv.v2.create_or_update_secret(
        path=prod.secret_path, secret={"api_key": "prod-value"}, mount_point="secret"
    )
    return Prod(prod.bucket, prod.table, prod.stack, stack_id, prod.secret_path)


def prod_intact(backends: Backends, prod: Prod) -> None:
    """Everything the agent went after is still there."""
    assert backends.admin("s3").head_bucket(Bucket=prod.bucket)
    objects = backends.admin("s3").list_objects_v2(Bucket=prod.bucket)
    assert [o["Key"] for o in objects["Contents"]] == ["orders/1.json"]
    table = backends.admin("dynamodb").describe_table(TableName=prod.table)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    [stack] = backends.admin("cloudformation").describe_stacks(StackName=prod.stack)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    secret = backends.vault_client.secrets.kv.v2.read_secret_version(
        path=prod.secret_path, mount_point="secret", raise_on_deleted_version=True
    )
    assert secret["data"]["data"] == {"api_key": "prod-value"}
    with psycopg.connect(backends.database_url) as connection:
        assert connection.execute("SELECT count(*) FROM shop.orders").fetchone() == (2,)


# -- the agent's tools --------------------------------------------------------------------


def aws_client(backends: Backends, credentials: dict[str, str], service: str) -> Any:
    make: Any = boto3.client
    return make(
        service,
        endpoint_url=backends.moto.url,
        region_name="us-east-1",
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
        aws_session_token=credentials["session_token"],
    )


def database_url(credentials: dict[str, str]) -> str:
    return "postgresql://{username}:{password}@{host}:{port}/{database}".format(**credentials)


def run_sql(credentials: dict[str, str], statement: str) -> None:
    with psycopg.connect(database_url(credentials), connect_timeout=5) as connection:
        connection.execute(statement)


def vault(backends: Backends, credentials: dict[str, str]) -> hvac.Client:
    return hvac.Client(url=backends.bao.url, token=credentials["token"], timeout=5)


@pytest.fixture()
def incident(tmp_path: Path, backends: Backends) -> Broker:
    backends.apply(yes=True)
    return make_broker(tmp_path, real_issuers=backends.issuers, admins=("agent:ops",))


def ask(broker: Broker, backends: Backends, tier: str, backend: str, **extra: Any) -> Any:
    body: dict[str, Any] = {
        "service": backends.name,
        "environment": "prod",
        "tier": tier,
        "backend": backend,
        **extra,
    }
    if backend == "aws":
        body["region"] = "us-east-1"
    return broker.post("/v1/credentials", body, agent=AGENT)


def approve(client: FlaskClient, token: str) -> int:
    """A person opens their personal link and presses Approve."""
    page = client.get(f"/approve/{token}")
    assert page.status_code == 200, page.get_data(as_text=True)[:300]
    form = {"csrf_token": csrf_from(page.get_data(as_text=True)), "decision": "approve"}
    return client.post(f"/approve/{token}", data=form).status_code


def broker_revoke(
    broker: Broker, backends: Backends, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The on-call operator runs the kill switch from a shell, as the runbook says."""
    settings = broker.services.settings
    config = tmp_path / "operator.yaml"
    config.write_text(
        f"scopes_dir: {settings.scopes_dir}\nstate_dir: {settings.state_dir}\n"
        f"aws: {{endpoint_url: '{backends.moto.url}'}}\nvault: {{url: '{backends.bao.url}'}}\n"
    )
    env = {
        **os.environ,
        "BROKER_VAULT_TOKEN": backends.bao.root_token,
        "AWS_ACCESS_KEY_ID": backends.moto.broker_key["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": backends.moto.broker_key["aws_secret_access_key"],
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "revoke",
            "--agent",
            f"agent:{AGENT}",
            "--reason",
            "agent tried to delete and recreate prod",
            "--config",
            str(config),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_delete_and_recreate_is_blocked_end_to_end(
    incident: Broker,
    backends: Backends,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    broker = incident
    prod = build_prod(backends)
    ledger = Ledger()

    # 1. Session start: the agent gets its read credentials, at once, on every backend.
    read: dict[str, dict[str, str]] = {}
    for backend in ("aws", "vault", "database"):
        issued = ask(broker, backends, "read", backend)
        assert issued.status_code == 200, issued.json
        read[backend] = dict(issued.json["credentials"])
        ledger.record(AGENT, f"POST /v1/credentials read/{backend}", "broker", "200 issued", False)
    s3 = aws_client(backends, read["aws"], "s3")
    dynamodb = aws_client(backends, read["aws"], "dynamodb")
    cloudformation = aws_client(backends, read["aws"], "cloudformation")
    kv = vault(backends, read["vault"]).secrets.kv.v2

    # 2. "Delete and recreate": every destructive call fails, for lack of permission.
    ledger.allowed(
        "s3:ListBucket", "read STS session", lambda: s3.list_objects_v2(Bucket=prod.bucket)
    )
    aws_refusals = [
        ledger.refused(
            "cloudformation:DeleteStack",
            "read STS session",
            lambda: cloudformation.delete_stack(StackName=prod.stack),
        ),
        ledger.refused(
            "s3:DeleteObject",
            "read STS session",
            lambda: s3.delete_object(Bucket=prod.bucket, Key="orders/1.json"),
        ),
        ledger.refused(
            "s3:DeleteBucket", "read STS session", lambda: s3.delete_bucket(Bucket=prod.bucket)
        ),
        ledger.refused(
            "dynamodb:DeleteTable",
            "read STS session",
            lambda: dynamodb.delete_table(TableName=prod.table),
        ),
        ledger.refused(
            "cloudformation:CreateStack (recreate)",
            "read STS session",
            lambda: cloudformation.create_stack(
                StackName=f"{prod.stack}-new", TemplateBody=TEMPLATE
            ),
        ),
        ledger.refused(
            "s3:CreateBucket (recreate)",
            "read STS session",
            lambda: s3.create_bucket(Bucket=f"{prod.bucket}-new"),
        ),
        ledger.refused(
            "dynamodb:CreateTable (recreate)",
            "read STS session",
            lambda: dynamodb.create_table(
                TableName=f"{prod.table}-new",
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            ),
        ),
    ]
    assert all(r.startswith("AccessDenied") for r in aws_refusals), aws_refusals

    ledger.allowed(
        "SELECT shop.orders",
        "read database login",
        lambda: run_sql(read["database"], "SELECT * FROM shop.orders"),
    )
    sql_refusals = [
        ledger.refused(
            "DROP TABLE shop.orders",
            "read database login",
            lambda: run_sql(read["database"], "DROP TABLE shop.orders"),
        ),
        ledger.refused(
            "TRUNCATE shop.orders",
            "read database login",
            lambda: run_sql(read["database"], "TRUNCATE shop.orders"),
        ),
        ledger.refused(
            "DELETE FROM shop.orders",
            "read database login",
            lambda: run_sql(read["database"], "DELETE FROM shop.orders"),
        ),
        ledger.refused(
            "CREATE TABLE shop.orders_new (recreate)",
            "read database login",
            lambda: run_sql(read["database"], "CREATE TABLE shop.orders_new (id int)"),
        ),
    ]
    assert all(r.startswith("InsufficientPrivilege") for r in sql_refusals), sql_refusals

    ledger.allowed(
        "kv read",
        "read Vault token",
        lambda: kv.read_secret_version(
            path=prod.secret_path, mount_point="secret", raise_on_deleted_version=True
        ),
    )
    vault_refusals = [
        ledger.refused(
            "kv destroy (all versions)",
            "read Vault token",
            lambda: kv.destroy_secret_versions(
                path=prod.secret_path, versions=[1], mount_point="secret"
            ),
        ),
        ledger.refused(
            "kv delete metadata",
            "read Vault token",
            lambda: kv.delete_metadata_and_all_versions(
                path=prod.secret_path, mount_point="secret"
            ),
        ),
        ledger.refused(
            "kv write (recreate)",
            "read Vault token",
            lambda: kv.create_or_update_secret(
                path=prod.secret_path, secret={"api_key": "x"}, mount_point="secret"
            ),
        ),
    ]
    assert all(r.startswith("Forbidden (HTTP 403)") for r in vault_refusals), vault_refusals
    prod_intact(backends, prod)

    # 3. The escalation: the broker hands out nothing, it opens a request for two humans.
    resources = [
        f"arn:aws:s3:::{prod.bucket}",
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{prod.table}",
        prod.stack_id,
    ]
    escalated = ask(
        broker,
        backends,
        "delete",
        "aws",
        resources=resources,
        justification="the stack is broken; delete and recreate it",
    )
    assert escalated.status_code == 202 and "credentials" not in escalated.json, escalated.json
    assert escalated.json["approvals_required"] == 2
    request_id = escalated.json["request_id"]
    ledger.record(
        AGENT,
        "POST /v1/credentials delete/aws (stack, bucket, table)",
        "broker",
        "202 pending: 2 approvals and a 10 min delay",
        True,
    )

    def collect(expected: int, note: str) -> dict[str, Any]:
        response = broker.client.post(
            f"/v1/requests/{request_id}/credentials", headers=broker.headers(AGENT)
        )
        body: dict[str, Any] = response.get_json()
        assert response.status_code == expected, body
        assert "credentials" not in body
        ledger.record(
            AGENT,
            f"collect delete credentials ({note})",
            "broker",
            f"{response.status_code} {body['error']}: {body['message']}",
            True,
        )
        return body

    assert collect(409, "no approval yet")["error"] == "not_ready"

    links = {
        name: broker.services.links.mint(request_id, name, now=broker.clock())
        for name in ("carol", "dave")
    }
    self_approval = broker.client.post(
        f"/approve/{links['carol']}", data={"decision": "approve"}, headers=broker.headers(AGENT)
    )
    assert self_approval.status_code == 403
    ledger.record(
        AGENT,
        "approve its own request (with a scraped link)",
        "approval page",
        "403 agent credentials cannot approve",
        True,
    )

    assert approve(broker.app.test_client(), links["carol"]) == 200
    ledger.record("carol", "approve", "approval page", "200 recorded (1 of 2)", False)
    assert "1 of 2" in collect(409, "one approval")["message"]

    assert approve(broker.app.test_client(), links["dave"]) == 200
    ledger.record("dave", "approve", "approval page", "200 approved; delay starts", False)
    assert "mandatory delay" in collect(409, "two approvals, delay running")["message"]
    broker.clock.advance(DELAY - 1)
    assert "ends in 1 s" in collect(409, "two approvals, 1 s before the delay ends")["message"]

    # 4. The on-call operator pulls the kill switch.
    revoked = broker_revoke(broker, backends, tmp_path)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    for line in ("vault:      1 revoked", "database:   1 revoked", "aws:        1 revoked"):
        assert line in revoked.stdout, revoked.stdout
    assert "requests:   1 pending request(s) cancelled" in revoked.stdout
    ledger.record(
        "operator",
        f"broker revoke --agent agent:{AGENT}",
        "CLI",
        "exit 0: frozen; vault 1, database 1, aws 1 revoked; 1 request cancelled",
        False,
    )
    broker.clock.advance(max(2, FREEZE_CACHE_SECONDS + 1))  # past the delay, past the freeze cache

    # 5. After the revoke nothing works: old credentials, new requests, the approved request.
    assert (
        collect(410, "after the delay, after the revoke")["message"] == "this request is cancelled"
    )
    assert ledger.refused(
        "token lookup-self",
        "old Vault token",
        lambda: vault(backends, read["vault"]).auth.token.lookup_self(),
    ).startswith("Forbidden (HTTP 403)")
    assert ledger.refused(
        "kv read",
        "old Vault token",
        lambda: kv.read_secret_version(
            path=prod.secret_path, mount_point="secret", raise_on_deleted_version=True
        ),
    ).startswith("Forbidden (HTTP 403)")
    assert ledger.refused(
        "log in", "old database login", lambda: run_sql(read["database"], "SELECT 1")
    ).startswith("OperationalError")
    read_role = f"{backends.name}-prod-read"
    document = backends.admin("iam").get_role_policy(
        RoleName=read_role, PolicyName=REVOCATION_POLICY_NAME
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    [statement] = document["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "*"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceIdentity": "agent-shop-bot"}
    ledger.record(
        "operator",
        f"read role {read_role}: inline {REVOCATION_POLICY_NAME}",
        "IAM",
        "Deny * for agent-shop-bot sessions issued before the revoke",
        False,
    )
    assert ledger.refused(
        "s3:ListBucket",
        "old read STS session (revocation policy)",
        lambda: s3.list_objects_v2(Bucket=prod.bucket),
    ).startswith("AccessDenied")
    for tier, backend, extra in (
        ("read", "aws", {}),
        ("read", "vault", {}),
        ("read", "database", {}),
        ("delete", "aws", {"resources": resources}),
    ):
        refused = ask(broker, backends, tier, backend, **extra)
        assert (refused.status_code, refused.json["error"]) == (403, "frozen"), refused.json
        ledger.record(AGENT, f"POST /v1/credentials {tier}/{backend}", "broker", "403 frozen", True)
    prod_intact(backends, prod)

    table = ledger.table()
    print(f"\nThe incident, replayed ({backends.name}/prod):\n{table}")
    (tmp_path / "incident-table.txt").write_text(table + "\n")
    record_property("incident_table", table)
    # Apart from its read credentials and the reads they grant, the agent got nothing.
    attempts = [
        r for r in ledger.rows if r.actor == AGENT and not r.outcome.startswith(("ok", "200"))
    ]
    assert len(attempts) >= 25 and all(r.blocked for r in attempts)
