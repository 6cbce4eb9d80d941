"""An upstream stopped mid-test: 503 and nothing issued; back up: issuance resumes without
restarting the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.apply.command import apply_scopes
from broker.apply.upstreams import HvacVaultManager
from broker.issuers.aws_accounts import AwsAccounts
from broker.issuers.aws_sts import StsIssuer
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_token import VaultTokenIssuer
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import ScopeSet, load_scope_set
from tests.fixtures.backends import FAST_RETRY, shop_scope
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.moto import Moto, start_moto
from tests.fixtures.openbao import OpenBao, start_openbao

NAME = "shopdown"


@pytest.fixture()
def own_servers(tmp_path: Path) -> Iterator[tuple[Moto, OpenBao]]:
    moto = start_moto(tmp_path, enforce=False)
    bao = start_openbao(tmp_path)
    yield moto, bao
    moto.stop()
    bao.stop()


def scope_set(tmp_path: Path) -> ScopeSet:
    scopes = tmp_path / "scopes"
    scopes.mkdir(exist_ok=True)
    # No database backend here: only AWS and Vault are stopped in these tests.
    (scopes / f"{NAME}.yaml").write_text(shop_scope(NAME, None, None))
    result = load_scope_set(scopes, LintContext(iam=iam_database()))
    assert not result.problems, result.problems
    return result.scope_set


def provision(moto: Moto, bao: OpenBao, scopes: ScopeSet) -> None:
    """What an operator does once: `broker scopes apply --yes` (the dev server mounts KV v2
    at secret/ by itself)."""
    client = bao.client()
    sts = StsIssuer(moto.session(), endpoint_url=moto.url, retry=FAST_RETRY)
    lines: list[str] = []
    result = apply_scopes(scopes, AwsAccounts(sts), HvacVaultManager(client), True, lines.append)
    assert result.ok, lines


READ = {"service": NAME, "environment": "prod", "region": "us-east-1", "tier": "read"}


def test_upstreams_down_then_back(tmp_path: Path, own_servers: tuple[Moto, OpenBao]) -> None:
    moto, bao = own_servers
    scopes = scope_set(tmp_path)
    provision(moto, bao, scopes)
    sts = StsIssuer(moto.session(), endpoint_url=moto.url, retry=FAST_RETRY)
    vault = VaultTokenIssuer(
        VaultCaller("vault", make_client(bao.url, bao.root_token), FAST_RETRY), bao.url
    )
    broker: Broker = make_broker(tmp_path, real_issuers={"aws": sts, "vault": vault})
    for backend in ("aws", "vault"):
        ok = broker.post("/v1/credentials", {**READ, "backend": backend}, agent="shop-bot")
        assert ok.status_code == 200, ok.json

    moto.stop()
    bao.stop()
    for backend in ("aws", "vault"):
        down = broker.post(
            "/v1/credentials", {**READ, "backend": backend, "duration": 1000}, agent="shop-bot"
        )
        assert down.status_code == 503, down.json
        assert down.json["error"] == "upstream_unavailable" and down.json["backend"] == backend
        assert "credentials" not in down.json
    ready = broker.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["aws"] != "ok" and ready.json["checks"]["vault"] != "ok"

    moto.start()
    bao.start()
    provision(moto, bao, scopes)  # dev servers keep no state across a restart
    for backend in ("aws", "vault"):
        back = broker.post(
            "/v1/credentials", {**READ, "backend": backend, "duration": 1000}, agent="shop-bot"
        )
        assert back.status_code == 200, back.json
        assert back.json["cached"] is False
