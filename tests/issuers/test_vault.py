"""Vault tokens and database logins from the broker, used against OpenBao and PostgreSQL."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import hvac
import psycopg
import pytest
from hvac import exceptions as vault_errors

from broker.guard.revocation import RevokeTarget
from broker.ids import new_request_id
from broker.intake import parse_request, resolve
from broker.issuance import Issued, issue_request
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_token import VaultTokenIssuer
from broker.policy.grant import REQUEST_PREFIX, request_artifact
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.faults import FaultProxy, fault_proxy

AGENT = "shop-bot"


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    backends.apply(yes=True)
    root = backends.vault_client
    root.secrets.kv.v2.create_or_update_secret(
        path=f"{backends.name}/prod/api-key", secret={"value": "k-1"}, mount_point="secret"
    )
    return make_broker(tmp_path, real_issuers=backends.issuers)


def issue(
    broker: Broker,
    backends: Backends,
    backend: str,
    tier: str,
    resources: list[str] | None = None,
) -> dict[str, str]:
    """Credentials issued at once (approval is another module's subject); write and delete
    name what they change: the KV secret api-key, the table shop.orders, unless told."""
    if resources is None and tier != "read":
        resources = [f"{backends.name}/prod/api-key" if backend == "vault" else "shop.orders"]
    services = broker.services
    identity = services.verifier.verify(broker.token(AGENT))
    body = {"service": backends.name, "environment": "prod", "tier": tier, "backend": backend}
    resolved = resolve(
        parse_request({**body, "resources": resources or []}),
        services.scopes.current,
        identity,
        services.iam,
    )
    issued = services.issuance.issue(identity, resolved, None, use_cache=False)
    assert isinstance(issued, Issued)
    return dict(issued.credential.body())


def kv(backends: Backends, token: str) -> hvac.Client:
    return hvac.Client(url=backends.bao.url, token=token, timeout=5)


def forbidden(call: object) -> bool:
    try:
        call()  # type: ignore[operator]
    except vault_errors.Forbidden:
        return True
    return False


def test_read_token_reads_and_cannot_write_or_delete(shop: Broker, backends: Backends) -> None:
    response = shop.post(
        "/v1/credentials",
        {"service": backends.name, "environment": "prod", "tier": "read", "backend": "vault"},
        agent=AGENT,
    )
    assert response.status_code == 200, response.json
    credentials = response.json["credentials"]
    assert credentials["vault_addr"] == backends.bao.url and credentials["accessor"]
    client = kv(backends, credentials["token"])
    path = f"{backends.name}/prod/api-key"
    secret = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert secret["data"]["data"] == {"value": "k-1"}
    lookup = client.auth.token.lookup_self()["data"]
    assert lookup["policies"] == [f"broker-{backends.name}-prod-read"]
    assert lookup["meta"]["agent"] == "agent:shop-bot" and lookup["meta"]["tier"] == "read"
    assert lookup["orphan"] is True
    assert forbidden(
        lambda: client.secrets.kv.v2.create_or_update_secret(
            path=path, secret={"value": "evil"}, mount_point="secret"
        )
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.delete_latest_version_of_secret(
            path=path, mount_point="secret"
        )
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.destroy_secret_versions(
            path=path, versions=[1], mount_point="secret"
        )
    )
    other = f"{backends.name}/staging/api-key"
    assert forbidden(
        lambda: client.secrets.kv.v2.read_secret_version(
            path=other, mount_point="secret", raise_on_deleted_version=True
        )
    )


def test_write_token_writes_and_cannot_delete_or_destroy(shop: Broker, backends: Backends) -> None:
    credentials = issue(shop, backends, "vault", "write")
    client = kv(backends, credentials["token"])
    path = f"{backends.name}/prod/api-key"
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"value": "k-2"}, mount_point="secret"
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.delete_latest_version_of_secret(
            path=path, mount_point="secret"
        )
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.destroy_secret_versions(
            path=path, versions=[1], mount_point="secret"
        )
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.delete_metadata_and_all_versions(
            path=path, mount_point="secret"
        )
    )
    lookup = client.auth.token.lookup_self()["data"]
    assert lookup["renewable"] is False


def test_a_token_renewed_past_its_first_expiry_is_dead_after_the_kill_switch(
    shop: Broker, backends: Backends
) -> None:
    """The agent tries to stretch a short token by renewing it; once the time it asked for
    has passed, `broker revoke` (which looks at records not yet expired) must leave it dead."""
    services = shop.services
    identity = services.verifier.verify(shop.token(AGENT))
    resolved = resolve(
        parse_request(
            {"service": backends.name, "environment": "prod", "tier": "read", "backend": "vault"}
        ),
        services.scopes.current,
        identity,
        services.iam,
    )
    request = issue_request(identity, resolved, new_request_id())
    short = replace(request, grant=replace(request.grant, duration_seconds=3))
    token = services.issuance.mint(short).credential.secret["token"]
    client = kv(backends, token)
    for _ in range(3):
        try:
            client.auth.token.renew_self(increment="1h")
        except (vault_errors.Forbidden, vault_errors.InvalidRequest):
            pass  # refused: what a token that must not outlive its record gets
        time.sleep(1.5)
    shop.clock.now = time.time()
    services.kill_switch.revoke(RevokeTarget(agent=f"agent:{AGENT}"), "ops", "renewal test")
    assert forbidden(lambda: client.auth.token.lookup_self())


def test_revoked_token_is_refused(shop: Broker, backends: Backends) -> None:
    credentials = issue(shop, backends, "vault", "read")
    [record] = shop.services.store.active_issued(shop.clock(), agent_subject="agent:shop-bot")
    backends.issuers["vault"].revoke(record)
    assert forbidden(lambda: kv(backends, credentials["token"]).auth.token.lookup_self())


def test_database_read_user_selects_and_is_denied_changes(shop: Broker, backends: Backends) -> None:
    credentials = issue(shop, backends, "database", "read")
    assert credentials["database"] == backends.database_name
    url = (
        f"postgresql://{credentials['username']}:{credentials['password']}@"
        f"{credentials['host']}:{credentials['port']}/{credentials['database']}"
    )
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute("SELECT item FROM shop.orders ORDER BY id").fetchall()
        assert rows == [("book",), ("lamp",)]
        for statement in (
            "INSERT INTO shop.orders VALUES (3, 'x')",
            "DELETE FROM shop.orders",
            "DROP TABLE shop.orders",
            "UPDATE shop.orders SET item = 'y'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)


def test_database_write_and_delete_tiers(shop: Broker, backends: Backends) -> None:
    write = issue(shop, backends, "database", "write")
    url = "postgresql://{username}:{password}@{host}:{port}/{database}"
    with psycopg.connect(url.format(**write), autocommit=True) as connection:
        connection.execute("INSERT INTO shop.orders VALUES (3, 'pen')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("DELETE FROM shop.orders WHERE id = 3")
    delete = issue(shop, backends, "database", "delete")
    with psycopg.connect(url.format(**delete), autocommit=True) as connection:
        connection.execute("DELETE FROM shop.orders WHERE id = 3")
        connection.execute("DROP TABLE shop.orders")


def test_revoked_lease_drops_the_login(shop: Broker, backends: Backends) -> None:
    credentials = issue(shop, backends, "database", "read")
    [record] = shop.services.store.active_issued(shop.clock(), agent_subject="agent:shop-bot")
    assert record.lease_id and record.username == credentials["username"]
    backends.issuers["database"].revoke(record)
    url = "postgresql://{username}:{password}@{host}:{port}/{database}".format(**credentials)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)


@pytest.mark.parametrize(("no_proxy", "through_proxy"), [("", 1), ("127.0.0.1", 0)])
def test_the_environments_proxy_settings_are_read_once_with_requests_rules(
    monkeypatch: pytest.MonkeyPatch, backends: Backends, no_proxy: str, through_proxy: int
) -> None:
    """The broker's Vault client reads HTTP(S)_PROXY and NO_PROXY when it is built, not on
    every call (requests would walk the environment each time), and still obeys them."""
    with fault_proxy(backends.bao.url) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, no_proxy)
        client = make_client(backends.bao.url, backends.bao.root_token)
        for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name)
        assert client.sys.read_health_status(method="GET")["initialized"]
        assert proxy.attempts("/v1/sys/health") == through_proxy


def test_a_write_token_for_one_path_cannot_write_another_path_of_the_tier(
    shop: Broker, backends: Backends
) -> None:
    mine, other = f"{backends.name}/prod/api-key", f"{backends.name}/prod/other-key"
    credentials = issue(shop, backends, "vault", "write", [mine])
    client = kv(backends, credentials["token"])
    client.secrets.kv.v2.create_or_update_secret(
        path=mine, secret={"value": "k-3"}, mount_point="secret"
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.create_or_update_secret(
            path=other, secret={"value": "evil"}, mount_point="secret"
        )
    )
    assert forbidden(
        lambda: client.secrets.kv.v2.read_secret_version(
            path=other, mount_point="secret", raise_on_deleted_version=True
        )
    )
    [policy] = client.auth.token.lookup_self()["data"]["policies"]
    assert policy.startswith("broker-req-req_")
    # Revoking the token deletes the request's own policy too (the record names it).
    [record] = shop.services.store.active_issued(shop.clock(), agent_subject="agent:shop-bot")
    assert record.vault_policy == policy
    backends.issuers["vault"].revoke(record)
    with pytest.raises(vault_errors.InvalidPath):
        backends.vault_client.sys.read_acl_policy(name=policy)


def policy_deletes(proxy: FaultProxy) -> int:
    return proxy.attempts("DELETE /v1/sys/policies/acl/")


def revoking_through(proxy: FaultProxy, backends: Backends) -> VaultTokenIssuer:
    """The broker's token issuer, its Vault calls counted by ``proxy``."""
    client = make_client(proxy.url, backends.bao.root_token)
    return VaultTokenIssuer(VaultCaller("vault", client), backends.bao.url)


def test_a_token_on_its_tiers_shared_policy_is_revoked_and_no_policy_is_deleted(
    shop: Broker, backends: Backends
) -> None:
    """A read naming no paths carries its tier's shared policy, and its record says so: the
    kill switch ends the token and deletes no policy (it has none of its own)."""
    credentials = issue(shop, backends, "vault", "read")
    store = shop.services.store
    [record] = store.active_issued(shop.clock(), agent_subject=f"agent:{AGENT}")
    assert record.vault_policy == credentials["policies"]
    assert not record.vault_policy.startswith(REQUEST_PREFIX)
    with fault_proxy(backends.bao.url) as proxy:
        issuer = revoking_through(proxy, backends)
        shop.services.kill_switch.issuers = {**shop.services.kill_switch.issuers, "vault": issuer}
        report = shop.services.kill_switch.revoke(
            RevokeTarget(agent=f"agent:{AGENT}"), "ops", "shared policy test"
        )
        assert report.backends["vault"].revoked == 1 and report.ok
        assert proxy.attempts("/v1/auth/token/revoke-accessor") == 1
        assert policy_deletes(proxy) == 0
    assert forbidden(lambda: kv(backends, credentials["token"]).auth.token.lookup_self())
    assert not store.active_issued(shop.clock(), agent_subject=f"agent:{AGENT}")
    [revoked] = store.issued_for_request(record.request_id)
    assert revoked.revoked_at is not None and revoked.vault_policy == record.vault_policy
    # The tier's policy serves other tokens: it is still there.
    assert backends.vault_client.sys.read_acl_policy(name=record.vault_policy)


def test_a_record_that_does_not_name_its_policy_has_its_requests_policy_deleted(
    shop: Broker, backends: Backends
) -> None:
    """Records written before the policy was recorded (or write-aheads never completed) do
    not say which policy the token carries: revoking deletes the request's own to be sure."""
    credentials = issue(shop, backends, "vault", "write")
    [record] = shop.services.store.active_issued(shop.clock(), agent_subject=f"agent:{AGENT}")
    policy = credentials["policies"]
    assert policy == request_artifact(record.request_id)
    with fault_proxy(backends.bao.url) as proxy:
        revoking_through(proxy, backends).revoke(replace(record, vault_policy=None))
        assert policy_deletes(proxy) == 1
    with pytest.raises(vault_errors.InvalidPath):
        backends.vault_client.sys.read_acl_policy(name=policy)
    assert forbidden(lambda: kv(backends, credentials["token"]).auth.token.lookup_self())


def test_a_database_login_for_one_table_cannot_write_another_and_lives_as_asked(
    shop: Broker, backends: Backends
) -> None:
    services = shop.services
    identity = services.verifier.verify(shop.token(AGENT))
    body = {
        "service": backends.name,
        "environment": "prod",
        "tier": "write",
        "backend": "database",
        "resources": ["shop.orders"],
        "duration": 120,
    }
    resolved = resolve(parse_request(body), services.scopes.current, identity, services.iam)
    issued = services.issuance.issue(identity, resolved, None, use_cache=False)
    credentials = issued.credential.body()
    url = "postgresql://{username}:{password}@{host}:{port}/{database}"
    with psycopg.connect(url.format(**credentials), autocommit=True) as connection:
        connection.execute("INSERT INTO shop.orders VALUES (7, 'pen')")
        for statement in (
            "INSERT INTO shop.returns VALUES (7, 'pen')",
            "SELECT * FROM shop.returns",
            "DELETE FROM shop.orders WHERE id = 7",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)
    # The lease is the duration asked for (120 s), not the tier's 30 minutes.
    lease = backends.vault_client.sys.read_lease(lease_id=credentials["lease_id"])["data"]
    assert 100 <= lease["ttl"] <= 120
    assert issued.credential.expires_at - time.time() <= 121
    assert (
        not backends.vault_client.sys.renew_lease(lease_id=credentials["lease_id"], increment=3600)[
            "lease_duration"
        ]
        > 120
    )


def test_a_connection_opened_before_the_kill_switch_does_not_survive_it(
    shop: Broker, backends: Backends
) -> None:
    """An agent that keeps a session open is not spared by the password's end or a
    dropped login: the revocation ends its connections too."""
    credentials = issue(shop, backends, "database", "write", ["shop.orders"])
    url = "postgresql://{username}:{password}@{host}:{port}/{database}".format(**credentials)
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        connection.execute("INSERT INTO shop.orders VALUES (8, 'kept open')")
        shop.clock.now = time.time()
        report = shop.services.kill_switch.revoke(
            RevokeTarget(agent=f"agent:{AGENT}"), "ops", "held connection"
        )
        assert report.ok and report.backends["database"].revoked == 1, report.lines()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("INSERT INTO shop.orders VALUES (9, 'after the revoke')")
    with psycopg.connect(backends.database_url, autocommit=True) as admin:
        rows = admin.execute("SELECT count(*) FROM shop.orders WHERE id = 9").fetchone()
    assert rows == (0,)
