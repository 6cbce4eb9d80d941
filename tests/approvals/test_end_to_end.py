"""End to end on real backends: a browser approves, the agent's write credentials write.

moto (STS with IAM enforcement on), OpenBao (tokens, KV, the database engine) and a
PostgreSQL database of its own, with a test scope applied to them. For each backend the
agent holds read credentials, asks for write, an approver approves in headless Chromium,
and the collected credentials really write (S3 PutObject under the write role, a Vault
KV write, a SQL INSERT) while the read credentials still cannot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import hvac
import psycopg
import pytest
from botocore.exceptions import ClientError
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from broker.app import create_app
from broker.services import build_services
from tests.approvals.flows import collect, link_token, open_request
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, FakeClock
from tests.fixtures.broker import test_settings as broker_settings
from tests.fixtures.browser import LiveServer

AGENT = "shop-bot"


@pytest.fixture()
def real(tmp_path: Path, backends: Backends, live_server: LiveServer) -> Iterator[Broker]:
    """The broker over HTTP, its issuers on moto, OpenBao and PostgreSQL."""
    backends.apply(yes=True)
    backends.admin("s3").create_bucket(Bucket=f"{backends.name}-prod-data")
    settings = broker_settings(tmp_path, public_url=live_server.url)
    assert settings.scopes_dir == backends.scopes_dir
    clock = FakeClock()
    services = build_services(settings, clock=clock, issuers=backends.issuers)
    app = create_app(services=services)
    live_server.app = app
    yield Broker(app, services, clock, backends.issuers)
    services.close()


def element(browser: WebDriver, element_id: str) -> WebElement:
    return WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


def credentials(broker: Broker, body: dict[str, Any]) -> dict[str, str]:
    response = broker.post("/v1/credentials", body, agent=AGENT)
    assert response.status_code == 200, response.json
    issued: dict[str, str] = response.json["credentials"]
    return issued


def approved_in_browser(broker: Broker, browser: WebDriver, body: dict[str, Any]) -> dict[str, str]:
    """Ask for write, approve as alice in Chromium, collect."""
    request_id = open_request(broker, body, agent=AGENT)
    browser.get(broker.services.links.url(link_token(broker, request_id, "alice")))
    assert element(browser, "tier").text == "write"
    element(browser, "approve").click()
    # While the outcome page replaces the form, Chromium can answer a lookup with "node
    # does not belong to the document" (not a stale-element error): poll through it.
    WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "status"), "approved")
    )
    response = collect(broker, request_id, agent=AGENT)
    assert response.status_code == 200, response.json
    issued: dict[str, str] = response.json["credentials"]
    return issued


def s3(backends: Backends, issued: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=backends.moto.url,
        region_name="us-east-1",
        aws_access_key_id=issued["access_key_id"],
        aws_secret_access_key=issued["secret_access_key"],
        aws_session_token=issued["session_token"],
    )


def sql(issued: dict[str, str]) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=issued["host"],
        port=int(issued["port"]),
        dbname=issued["database"],
        user=issued["username"],
        password=issued["password"],
        autocommit=True,
    )


def test_approved_write_credentials_really_write_and_read_ones_still_cannot(
    real: Broker, backends: Backends, browser: WebDriver
) -> None:
    name = backends.name
    base = {"service": name, "environment": "prod"}
    bucket = f"{name}-prod-data"

    # AWS: PutObject under the write role.
    aws = {**base, "region": "us-east-1", "backend": "aws"}
    read_aws = credentials(real, {**aws, "tier": "read"})
    write_aws = approved_in_browser(
        real,
        browser,
        {
            **aws,
            "tier": "write",
            "resources": [f"arn:aws:s3:::{bucket}/orders/*"],
            "justification": "upload the corrected order",
        },
    )
    assert write_aws["role_arn"].endswith(f"{name}-prod-write")
    s3(backends, write_aws).put_object(Bucket=bucket, Key="orders/3.json", Body=b"{}")
    with pytest.raises(ClientError) as refused:
        s3(backends, read_aws).put_object(Bucket=bucket, Key="orders/4.json", Body=b"{}")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    keys = s3(backends, read_aws).list_objects_v2(Bucket=bucket)["Contents"]
    assert [k["Key"] for k in keys] == ["orders/3.json"]

    # Vault: a KV write with the write token; the read token is refused.
    vault = {**base, "backend": "vault"}
    read_vault = credentials(real, {**vault, "tier": "read"})
    write_vault = approved_in_browser(
        real,
        browser,
        {**vault, "tier": "write", "resources": [f"{name}/prod/config"], "justification": "flag"},
    )
    writer = hvac.Client(url=backends.bao.url, token=write_vault["token"])
    writer.secrets.kv.v2.create_or_update_secret(
        path=f"{name}/prod/config", secret={"feature": "on"}, mount_point="secret"
    )
    reader = hvac.Client(url=backends.bao.url, token=read_vault["token"])
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v2.create_or_update_secret(
            path=f"{name}/prod/config", secret={"feature": "off"}, mount_point="secret"
        )
    stored = reader.secrets.kv.v2.read_secret_version(
        path=f"{name}/prod/config", mount_point="secret", raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"feature": "on"}

    # PostgreSQL: an INSERT with the write login; the read login is refused.
    database = {**base, "backend": "database"}
    read_db = credentials(real, {**database, "tier": "read"})
    write_db = approved_in_browser(
        real,
        browser,
        {**database, "tier": "write", "resources": ["shop.orders"], "justification": "backfill"},
    )
    with sql(write_db) as connection:
        connection.execute("INSERT INTO shop.orders VALUES (3, 'chair')")
    with sql(read_db) as connection, pytest.raises(psycopg.errors.InsufficientPrivilege):
        connection.execute("INSERT INTO shop.orders VALUES (4, 'desk')")
    with sql(read_db) as connection:
        rows = connection.execute("SELECT item FROM shop.orders ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["book", "lamp", "chair"]
