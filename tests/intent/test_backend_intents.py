"""Vault and database intents on real backends: OpenBao issues a token whose policy holds the
intent's paths only, and a PostgreSQL login whose role holds the intent's privileges only;
a destructive database intent's impact is PostgreSQL's row estimate, measured with the read
tier before anyone decides."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import psycopg
import pytest
from hvac import exceptions as vault_errors

from broker.app import create_app
from broker.services import build_services
from tests.approvals.flows import approve_via_page, collect, link_token
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, FakeClock
from tests.fixtures.broker import test_settings as broker_settings

AGENT = "shop-bot"


@pytest.fixture()
def real(tmp_path: Path, backends: Backends) -> Iterator[Broker]:
    backends.apply(yes=True)
    settings = broker_settings(tmp_path)
    assert settings.scopes_dir == backends.scopes_dir
    clock = FakeClock()
    services = build_services(settings, clock=clock, issuers=backends.issuers)
    yield Broker(create_app(services=services), services, clock, backends.issuers)
    services.close()


def opened(broker: Broker, backends: Backends, backend: str, intent: dict[str, Any]) -> Any:
    body = {
        "service": backends.name,
        "environment": "prod",
        "tier": "read",  # the intent decides
        "backend": backend,
        "justification": "do exactly what the intent says",
        "intent": intent,
    }
    response = broker.post("/v1/credentials", body, agent=AGENT)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def collected(broker: Broker, request_id: str) -> dict[str, str]:
    response = collect(broker, request_id, agent=AGENT)
    assert response.status_code == 200, response.get_json()
    issued: dict[str, str] = response.get_json()["credentials"]
    return issued


def test_a_vault_intent_yields_a_token_for_its_paths_only(real: Broker, backends: Backends) -> None:
    root = backends.vault_client
    base = f"{backends.name}/prod"
    for name in ("api-key", "db-password"):
        root.secrets.kv.v2.create_or_update_secret(
            path=f"{base}/{name}", secret={"v": "1"}, mount_point="secret"
        )
    intent = {"operations": [{"path": f"secret/data/{base}/api-key", "capabilities": ["update"]}]}
    answer = opened(real, backends, "vault", intent)
    assert (answer["intent"]["tier"], answer["intent"]["operations"]) == ("write", 1)
    page = real.client.get(f"/approve/{link_token(real, answer['request_id'], 'bob')}")
    assert f"adds vault update on secret/data/{base}/api-key" in page.get_data(as_text=True)
    approve_via_page(real.client, link_token(real, answer["request_id"], "alice"))
    issued = collected(real, answer["request_id"])
    token = hvac.Client(url=backends.bao.url, token=issued["token"])
    token.secrets.kv.v2.create_or_update_secret(
        path=f"{base}/api-key", secret={"v": "2"}, mount_point="secret"
    )
    for forbidden in (
        lambda: token.secrets.kv.v2.create_or_update_secret(
            path=f"{base}/db-password", secret={"v": "x"}, mount_point="secret"
        ),
        lambda: token.secrets.kv.v2.read_secret_version(
            path=f"{base}/db-password", mount_point="secret", raise_on_deleted_version=True
        ),
        lambda: token.secrets.kv.v2.delete_metadata_and_all_versions(
            path=f"{base}/api-key", mount_point="secret"
        ),
    ):
        with pytest.raises(vault_errors.Forbidden):
            forbidden()
    kept = root.secrets.kv.v2.read_secret_version(
        path=f"{base}/api-key", mount_point="secret", raise_on_deleted_version=True
    )
    assert kept["data"]["data"] == {"v": "2"}


def wait_for_impact(broker: Broker, request_id: str) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        impact = broker.services.approvals.get(request_id).impact
        if impact.get("status") == "done":
            return list(impact["lines"])
        time.sleep(0.1)
    raise AssertionError("the impact was never measured")


def test_a_database_intent_measures_its_rows_and_grants_its_privileges_only(
    real: Broker, backends: Backends
) -> None:
    with psycopg.connect(backends.database_url, autocommit=True) as admin:
        admin.execute("INSERT INTO shop.orders SELECT g, 'item' FROM generate_series(3, 500) g")
        admin.execute("ANALYZE shop.orders")
    # DELETE ... WHERE reads the columns it tests: PostgreSQL wants SELECT for that.
    intent = {"operations": [{"object": "shop.orders", "privileges": ["SELECT", "DELETE"]}]}
    answer = opened(real, backends, "database", intent)
    assert (answer["intent"]["tier"], answer["intent"]["destructive"]) == ("delete", 1)
    assert answer["approvals_required"] == 2
    page = real.client.get(f"/approve/{link_token(real, answer['request_id'], 'erin')}")
    assert "adds database DELETE on shop.orders" in page.get_data(as_text=True)
    assert "adds database SELECT" not in page.get_data(as_text=True)  # read has it
    lines = wait_for_impact(real, answer["request_id"])
    assert len(lines) == 1 and lines[0].startswith("deletes up to about 500 rows"), lines
    for approver in ("carol", "dave"):
        approve_via_page(real.client, link_token(real, answer["request_id"], approver))
    real.clock.advance(600)
    issued = collected(real, answer["request_id"])
    with psycopg.connect(
        host=issued["host"],
        port=int(issued["port"]),
        dbname=issued["database"],
        user=issued["username"],
        password=issued["password"],
        autocommit=True,
    ) as login:
        assert login.execute("DELETE FROM shop.orders WHERE id = 3").rowcount == 1
        for statement in (
            "INSERT INTO shop.orders VALUES (9999, 'x')",
            "UPDATE shop.orders SET item = 'y' WHERE id = 4",
            "DROP TABLE shop.orders",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                login.execute(statement)
