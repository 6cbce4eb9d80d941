"""Nothing minted goes unrecorded: the write-ahead, the reconciler, and what the kill switch
does to credentials in flight. Real OpenBao, PostgreSQL and the AWS stand-in; one test kills
a real `broker serve` with SIGKILL between Vault's answer and the record."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner
from hvac import exceptions as vault_errors

from broker.cli import cli
from broker.config import load_settings
from broker.devstack.processes import ServerProcess, free_port
from broker.errors import StoreUnavailable
from broker.guard.revocation import RevokeTarget
from broker.identity.mint import mint_agent_token
from broker.ids import new_request_id
from broker.intake import parse_request, resolve
from broker.issuance import issue_request, write_ahead
from broker.issuers.aws_accounts import AwsAccounts
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_token import VaultTokenIssuer
from broker.keys import load_keys
from broker.store.records import AuditRecord, Completion, FreezeRecord, IssuedRecord
from broker.store.sql import SqlStore
from tests.approvals.flows import collect, open_request
from tests.fixtures.backends import FAST_RETRY, Backends
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.faults import Fault, fault_proxy
from tests.fixtures.secret_scan import Watcher
from tests.killswitch.support import can_log_in, s3_reads

AGENT = "shop-bot"


def tokens_of(backends: Backends, request_id: str) -> list[str]:
    """Accessors of live Vault tokens whose metadata names ``request_id`` (as root)."""
    root = backends.vault_client
    found = []
    for accessor in root.auth.token.list_accessors()["data"]["keys"]:
        try:
            meta = root.auth.token.lookup_accessor(accessor)["data"].get("meta") or {}
        except vault_errors.InvalidRequest:
            continue
        if meta.get("request_id") == request_id:
            found.append(accessor)
    return found


def policy_exists(backends: Backends, name: str) -> bool:
    try:
        backends.vault_client.sys.read_acl_policy(name=name)
    except vault_errors.InvalidPath:
        return False
    return True


class CompletionFails(SqlStore):
    """The store, failing exactly when an issuance is recorded (after Vault minted)."""

    failures = 1

    def complete_issue(self, record: IssuedRecord, audit: AuditRecord) -> Completion:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the broker's store is unavailable (OperationalError)")
        return super().complete_issue(record, audit)


@pytest.fixture(params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path: Path, backends: Backends) -> Broker:
    """A broker on the real backends, on SQLite or on PostgreSQL (where the freezes and the
    completions of issuances order each other by an advisory lock)."""
    backends.apply(yes=True)
    backends.admin("s3").create_bucket(Bucket=f"{backends.name}-prod-data")
    backends.admin("s3").put_object(Bucket=f"{backends.name}-prod-data", Key="a.txt", Body=b"a")
    url = (
        f"sqlite:///{tmp_path / 'broker.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = CompletionFails.from_url(url)
    store.failures = 0
    broker = make_broker(tmp_path, store=store, real_issuers=backends.issuers)
    broker.services.kill_switch.accounts = AwsAccounts(backends.sts)
    broker.services.reconciler.accounts = AwsAccounts(backends.sts)
    return broker


def read(backends: Backends, backend: str) -> dict[str, Any]:
    body = {"service": backends.name, "environment": "prod", "tier": "read", "backend": backend}
    return {**body, "region": "us-east-1"} if backend == "aws" else body


def test_a_store_failure_at_collection_leaves_no_live_credential_and_no_second_collect(
    shop: Broker, backends: Backends
) -> None:
    body = {
        **read(backends, "vault"),
        "tier": "write",
        "resources": [f"{backends.name}/prod/api-key"],
    }
    request_id = open_request(shop, body, agent=AGENT)
    shop.services.approvals.decide(request_id, "alice", "approve", via="page")
    store = shop.services.store
    assert isinstance(store, CompletionFails)
    store.failures = 1
    failed = collect(shop, request_id, agent=AGENT)
    assert failed.status_code == 503, failed.json
    # Vault minted a token; it was revoked at once and its policy deleted.
    assert tokens_of(backends, request_id) == []
    assert not policy_exists(backends, f"broker-req-{request_id}")
    # The request is over: a second collection would be a second credential.
    again = collect(shop, request_id, agent=AGENT)
    assert again.status_code == 410, again.json
    record = store.get_request(request_id)
    assert record is not None and record.status == "cancelled"
    assert "collection failed" in (record.reason or "")
    # The write-ahead stays until the reconciler has made sure; then it is an orphan.
    [row] = store.issued_for_request(request_id)
    assert row.state == "minting"
    shop.clock.advance(60)
    shop.services.reconciler.run()
    [row] = store.issued_for_request(request_id)
    assert row.state == "orphan"


def test_an_aws_session_minted_without_a_record_is_denied_by_the_reconciler(
    shop: Broker, backends: Backends
) -> None:
    store = shop.services.store
    assert isinstance(store, CompletionFails)
    identity = shop.services.verifier.verify(shop.token(AGENT))
    resolved = resolve(
        parse_request(read(backends, "aws")),
        shop.services.scopes.current,
        identity,
        shop.services.iam,
    )
    minted: list[dict[str, str]] = []
    sts = backends.issuers["aws"]
    original = sts.issue

    def keep(request: Any) -> Any:  # what the agent never received, to try it afterwards
        credential = original(request)
        minted.append(dict(credential.body()))
        return credential

    sts.issue = keep
    store.failures = 1
    try:
        with pytest.raises(StoreUnavailable):
            shop.services.issuance.issue(identity, resolved, None, use_cache=False)
    finally:
        del sts.issue
    [session] = minted
    assert s3_reads(backends, session)
    shop.clock.now = time.time() + 30
    report = shop.services.reconciler.run()
    assert len(report.orphans_revoked) == 1 and not report.errors
    assert not s3_reads(backends, session)


def test_a_database_login_minted_without_a_record_is_dropped_by_the_reconciler(
    shop: Broker, backends: Backends
) -> None:
    """The replica wrote ahead and Vault made the login, then the replica died: no record
    names the lease. The reconciler revokes every lease under the request's own role."""
    services = shop.services
    identity = services.verifier.verify(shop.token(AGENT))
    body = {**read(backends, "database"), "tier": "write", "resources": ["shop.orders"]}
    resolved = resolve(parse_request(body), services.scopes.current, identity, services.iam)
    request = issue_request(identity, resolved, new_request_id())
    services.store.begin_issue(write_ahead(request, time.time(), 10.0))
    login = backends.issuers["database"].issue(request).body()  # never recorded
    assert can_log_in(login)
    shop.clock.now = time.time() + 30
    report = services.reconciler.run()
    assert report.orphans_revoked == [request.request_id] and not report.errors
    assert not can_log_in(login)
    [row] = services.store.issued_for_request(request.request_id)
    assert row.state == "orphan"
    db = backends.vault_client.secrets.database
    with pytest.raises(vault_errors.InvalidPath):  # its role is gone too
        db.read_role(name=f"broker-req-{request.request_id}", mount_point=backends.db_mount)


@pytest.mark.parametrize("stop", ["kill switch", "circuit breaker"])
@pytest.mark.parametrize("path", ["issuance", "collection"])
def test_a_freeze_while_a_token_is_being_minted_revokes_it_and_hands_nothing_out(
    shop: Broker, backends: Backends, path: str, stop: str
) -> None:
    """The replica read the freezes before the stop; Vault answers after it. The kill
    switch also marks the write-ahead revoked; the circuit breaker only freezes: the
    completion must see the freeze itself, in a read at once and at collection."""
    request_id = None
    body = read(backends, "vault")
    if path == "collection":
        body = {**body, "tier": "write", "resources": [f"{backends.name}/prod/api-key"]}
        request_id = open_request(shop, body, agent=AGENT)
        shop.services.approvals.decide(request_id, "alice", "approve", via="page")
    with fault_proxy(backends.bao.url) as proxy:
        client = make_client(proxy.url, backends.bao.root_token)
        issuer = VaultTokenIssuer(VaultCaller("vault", client, FAST_RETRY), backends.bao.url)
        shop.services.issuance.issuers = {**backends.issuers, "vault": issuer}
        proxy.inject(Fault("latency", times=1, match="auth/token/create", seconds=1.5))
        answers: list[Any] = []

        def ask() -> None:
            if request_id is None:
                answers.append(shop.post("/v1/credentials", body, agent=AGENT))
            else:
                answers.append(collect(shop, request_id, agent=AGENT))

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.5)
        if stop == "kill switch":
            target = RevokeTarget(agent=f"agent:{AGENT}")
            shop.services.kill_switch.revoke(target, "ops", "in flight")
        else:
            freeze = FreezeRecord("agent", f"agent:{AGENT}", "tripped", "circuit-breaker", 0.0)
            shop.services.store.add_freeze(replace(freeze, created_at=shop.clock()))
        asking.join(30)
    [answer] = answers
    assert answer.status_code == 403 and answer.json["error"] == "frozen", answer.json
    withdrawn = [
        r
        for r in shop.services.store.audit_records()
        if (r.action, r.outcome) == ("issue", "withdrawn")
    ]
    assert len(withdrawn) == 1
    minted = str(withdrawn[0].request_id)
    assert tokens_of(backends, minted) == []
    assert not policy_exists(backends, f"broker-req-{minted}")
    if request_id is not None:
        # The collection ended the request: collecting again would mint a second token.
        assert minted == request_id
        record = shop.services.store.get_request(request_id)
        assert record is not None and record.status == "cancelled", record
        shop.services.store.lift_freezes("agent", f"agent:{AGENT}", shop.clock())
        shop.services.guard.forget_freezes()
        assert collect(shop, request_id, agent=AGENT).status_code == 410


def test_each_requests_own_documents_go_once_its_credential_ended(
    shop: Broker, backends: Backends
) -> None:
    body = {**read(backends, "vault"), "resources": [f"{backends.name}/prod/api-key"]}
    ended = shop.post("/v1/credentials", {**body, "duration": 60}, agent=AGENT).json
    database = shop.post(
        "/v1/credentials", {**read(backends, "database"), "resources": ["shop.orders"]}, agent=AGENT
    ).json
    assert policy_exists(backends, f"broker-req-{ended['request_id']}")
    shop.clock.advance(130)  # the 60 s token ended (and a minute's grace)
    live = shop.post("/v1/credentials", {**body, "duration": 600}, agent="other-bot")
    report = shop.services.reconciler.run()
    assert not report.errors, report.errors
    assert ended["request_id"] in report.cleaned
    assert not policy_exists(backends, f"broker-req-{ended['request_id']}")
    # Still in force: the database login (1 h) and another agent's token are untouched.
    assert database["request_id"] not in report.cleaned
    if live.status_code == 200:
        assert policy_exists(backends, f"broker-req-{live.json['request_id']}")


def test_a_broker_killed_between_vaults_answer_and_the_record_is_reconciled_after_restart(
    tmp_path: Path, backends: Backends, secret_scan: Watcher
) -> None:
    backends.apply(yes=True)
    with fault_proxy(backends.bao.url) as proxy:
        config, env = broker_config(tmp_path, backends, proxy.url)
        port = free_port()
        minted = threading.Event()

        def hold(body: bytes) -> bytes:
            minted.set()  # Vault has created the token; the broker never hears of it
            time.sleep(20)
            return body

        proxy.inject(Fault("rewrite", times=1, match="auth/token/create", rewrite=hold))
        first = serve(tmp_path / "first.log", config, env, port, secret_scan)
        settings = load_settings(config)
        token = mint_agent_token(load_keys(settings.state_dir), settings.identity.local, AGENT, 600)
        url = f"http://127.0.0.1:{port}/v1/credentials"
        headers = {"Authorization": f"Bearer {token}"}
        asking = threading.Thread(
            target=lambda: _quietly(url, headers, read(backends, "vault")), daemon=True
        )
        asking.start()
        assert minted.wait(30)
        first.kill()  # kill -9: between Vault's answer and the broker's record
        store = SqlStore.from_url(settings.database_url)
        try:
            [row] = [r for r in _all_issued(store) if r.backend == "vault"]
            assert row.state == "minting"
            assert len(tokens_of(backends, row.request_id)) == 1  # live, and unrecorded
            proxy.heal()
            second = serve(tmp_path / "second.log", config, env, port, secret_scan)
            try:
                deadline = time.monotonic() + 60
                while store.issued_for_request(row.request_id)[0].state != "orphan":
                    assert time.monotonic() < deadline, "the reconciler did not run"
                    time.sleep(0.5)
            finally:
                second.stop()
            assert tokens_of(backends, row.request_id) == []
            trail = [(r.action, r.outcome) for r in store.audit_records(request_id=row.request_id)]
            assert ("reconcile", "revoked") in trail
            # Nothing is left to do; an operator can run a pass by hand.
            result = CliRunner().invoke(cli, ["reconcile", "--config", str(config)], env=env)
            assert result.exit_code == 0, result.output
            assert "orphans revoked: 0" in result.output
        finally:
            store.close()


def broker_config(
    tmp_path: Path, backends: Backends, vault_url: str
) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "broker.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "scopes_dir": str(backends.scopes_dir),
                "state_dir": str(tmp_path / "state"),
                "workers": 1,
                # The scope's approval rules name these: without them it is refused whole.
                "approvers": {
                    name: {"email": f"{name}@example.com"}
                    for name in ("alice", "bob", "carol", "dave", "erin")
                },
                "groups": {"sre-oncall": ["carol", "dave", "erin"]},
                "aws": {"endpoint_url": backends.moto.url},
                "vault": {"url": vault_url},
                # A short deadline: a write-ahead older than it (and 5 s) is an orphan.
                "limits": {"upstream_deadline": "2s", "reconcile_interval": "1s"},
            }
        )
    )
    env = {
        "BROKER_VAULT_TOKEN": backends.bao.root_token,
        "AWS_ACCESS_KEY_ID": backends.moto.broker_key["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": backends.moto.broker_key["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }
    return config, env


def serve(log: Path, config: Path, env: dict[str, str], port: int, scan: Watcher) -> ServerProcess:
    scan.watch(log)
    process = ServerProcess(
        [
            sys.executable,
            "-m",
            "broker.cli",
            "serve",
            "--config",
            str(config),
            "--bind",
            f"127.0.0.1:{port}",
        ],
        log,
        env=env,
    )
    process.start(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok)
    return process


def _quietly(url: str, headers: dict[str, str], body: dict[str, Any]) -> None:
    try:
        requests.post(url, json=body, headers=headers, timeout=30)
    except requests.RequestException:
        pass  # the broker was killed mid-request


def _all_issued(store: SqlStore) -> list[IssuedRecord]:
    return store.active_issued(0.0)
