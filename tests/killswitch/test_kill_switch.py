"""The kill switch against real backends: Vault tokens, database logins, AWS sessions."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from broker.app import create_app
from broker.guard.revocation import REVOCATION_POLICY_NAME, RevokeTarget
from broker.notify.base import ApprovalNotice, NotificationFailed
from broker.services import build_services
from tests.fixtures.backends import Backends
from tests.fixtures.broker import Broker, FakeClock, FakeIssuer, make_broker
from tests.fixtures.broker import test_settings as broker_settings
from tests.killswitch.support import (
    ADMIN,
    AGENT,
    OTHER,
    can_log_in,
    issue,
    run,
    s3_reads,
    shop_broker,
    vault_alive,
    wait_past_cutoff,
)


@pytest.fixture()
def shop(tmp_path: Path, backends: Backends) -> Broker:
    return shop_broker(tmp_path, backends)


def test_revoking_an_agent_cuts_it_off_everywhere(shop: Broker, backends: Backends) -> None:
    mine = {
        backend: issue(shop, backends, AGENT, backend) for backend in ("aws", "vault", "database")
    }
    theirs = {
        backend: issue(shop, backends, OTHER, backend) for backend in ("aws", "vault", "database")
    }
    assert vault_alive(backends, mine["vault"]["token"]) and can_log_in(mine["database"])
    assert s3_reads(backends, mine["aws"]) and s3_reads(backends, theirs["aws"])

    # The broker's clock is the test's; AWS compares the cut-off with real issue times.
    shop.clock.now = max(shop.clock.now, time.time())
    response = shop.post(
        "/v1/revoke",
        {"agent": "agent:shop-bot", "reason": "deleting production by mistake"},
        agent=ADMIN,
    )
    assert response.status_code == 200, response.json
    report = response.json
    assert report["complete"] is True and report["frozen"] == "agent agent:shop-bot"
    assert report["backends"]["vault"]["revoked"] == 1
    assert report["backends"]["database"]["revoked"] == 1
    assert report["backends"]["aws"]["revoked"] == 1
    # Every tier role the agent may hold a session of: another replica may be minting one.
    assert report["backends"]["aws"]["roles"] == [
        f"arn:aws:iam::123456789012:role/broker/{backends.name}-prod-{tier}"
        for tier in ("delete", "read", "write")
    ]

    assert not vault_alive(backends, mine["vault"]["token"])
    assert not can_log_in(mine["database"])
    # AWS enforces the revocation: this agent's session is refused (even one issued in the
    # same second as the revoke), the other agent's session on the same role is not.
    assert not s3_reads(backends, mine["aws"])
    assert s3_reads(backends, theirs["aws"])
    document = backends.admin("iam").get_role_policy(
        RoleName=f"{backends.name}-prod-read", PolicyName=REVOCATION_POLICY_NAME
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    [statement] = document["Statement"]
    assert statement["Effect"] == "Deny" and statement["Action"] == "*"
    assert statement["Condition"]["StringEquals"] == {"aws:SourceIdentity": "agent-shop-bot"}
    assert "aws:TokenIssueTime" in statement["Condition"]["DateLessThan"]

    refused = shop.post(
        "/v1/credentials",
        {"service": backends.name, "environment": "prod", "tier": "read", "backend": "vault"},
        agent=AGENT,
    )
    assert refused.status_code == 403 and refused.json["error"] == "frozen"

    # The other agent keeps what it has and still gets new credentials.
    assert vault_alive(backends, theirs["vault"]["token"]) and can_log_in(theirs["database"])
    assert issue(shop, backends, OTHER, "vault")["token"]
    assert s3_reads(backends, issue(shop, backends, OTHER, "aws"))


def test_only_admins_may_use_the_kill_switch(shop: Broker, backends: Backends) -> None:
    response = shop.post("/v1/revoke", {"all": True, "reason": "I want to"}, agent=AGENT)
    assert response.status_code == 403
    assert shop.services.guard.frozen("agent:anyone", backends.name, "prod") is None


def test_revoke_and_unfreeze_on_the_command_line(
    shop: Broker,
    backends: Backends,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = issue(shop, backends, AGENT, "vault")["token"]
    before = issue(shop, backends, AGENT, "aws")
    settings = shop.services.settings
    config = tmp_path / "cli.yaml"
    config.write_text(
        f"scopes_dir: {settings.scopes_dir}\nstate_dir: {settings.state_dir}\n"
        f"aws: {{endpoint_url: '{backends.moto.url}'}}\nvault: {{url: '{backends.bao.url}'}}\n"
        # A short upstream deadline keeps the AWS cut-off (and the wait for it) short.
        "limits: {upstream_deadline: 1s}\n"
    )
    monkeypatch.setenv("BROKER_VAULT_TOKEN", backends.bao.root_token)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backends.moto.broker_key["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backends.moto.broker_key["aws_secret_access_key"])
    assert (
        run(
            [
                "revoke",
                "--service",
                backends.name,
                "--environment",
                "prod",
                "--reason",
                "incident 42",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"Revoked service {backends.name}/prod." in out
    assert "vault:      1 revoked" in out
    assert f"scope {backends.name}/prod" in out
    assert not vault_alive(backends, token)
    assert not s3_reads(backends, before)
    shop.clock.advance(2)  # replicas re-read freezes at least every second
    frozen = shop.post(
        "/v1/credentials",
        {"service": backends.name, "environment": "prod", "tier": "read", "backend": "vault"},
        agent=OTHER,
    )
    assert frozen.status_code == 403 and frozen.json["error"] == "frozen"
    assert (
        run(
            [
                "unfreeze",
                "--service",
                backends.name,
                "--environment",
                "prod",
                "--reason",
                "incident 42 resolved",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Unfrozen service" in out and "effective at" in out
    # Until the AWS cut-off has passed the freeze holds: a session issued now would be
    # denied the moment it is used.
    shop.clock.now = time.time()
    shop.services.guard.forget_freezes()  # as a replica that reads the freezes again
    still = shop.post(
        "/v1/credentials",
        {"service": backends.name, "environment": "prod", "tier": "read", "backend": "vault"},
        agent=OTHER,
    )
    assert still.status_code == 403 and "unfrozen" in still.json["message"]
    shop.clock.now = time.time() + 4
    assert issue(shop, backends, OTHER, "vault")["token"]
    # New AWS sessions work again once past the cut-off; the revoked one stays revoked.
    wait_past_cutoff(backends, f"{backends.name}-prod-read")
    after = issue(shop, backends, AGENT, "aws")
    assert s3_reads(backends, after)
    assert not s3_reads(backends, before)
    actions = [(r.action, r.outcome) for r in shop.services.store.audit_records()]
    assert ("revoke", "complete") in actions and ("unfreeze", "lifted") in actions


class DeadSlack:
    def request_opened(self, notice: ApprovalNotice) -> dict[str, Any]:
        raise NotificationFailed("slack is unreachable")

    def request_updated(
        self, notice: ApprovalNotice, status: str, detail: str, handle: Any
    ) -> None:
        raise NotificationFailed("slack is unreachable")

    def alert(self, text: str, evidence: Any = ()) -> None:
        raise NotificationFailed("slack is unreachable")


def test_slack_down_and_a_backend_down_are_reported_not_hidden(tmp_path: Path) -> None:
    clock = FakeClock()
    issuers = {name: FakeIssuer(name, clock) for name in ("aws", "vault", "database")}
    settings = broker_settings(tmp_path, admins=("agent:ops",))
    services = build_services(settings, clock=clock, issuers=issuers, notifier=DeadSlack())
    broker = Broker(create_app(services=services), services, clock, issuers)
    assert (
        broker.post(
            "/v1/credentials",
            {"service": "ledger", "environment": "prod", "tier": "read", "backend": "vault"},
            agent="ledger-maintainer",
        ).status_code
        == 200
    )
    issuers["vault"].down = True
    response = broker.post(
        "/v1/revoke", {"agent": "agent:ledger-maintainer", "reason": "compromised"}, agent=ADMIN
    )
    assert response.status_code == 207
    report = response.json
    assert report["complete"] is False
    assert report["backends"]["vault"]["failed"] == 1
    assert report["backends"]["vault"]["errors"] == ["vault is down"]
    assert report["alert"].startswith("FAILED")
    # The freeze holds although the backend could not be reached.
    refused = broker.post(
        "/v1/credentials",
        {"service": "ledger", "environment": "prod", "tier": "read", "backend": "vault"},
        agent="ledger-maintainer",
    )
    assert refused.status_code == 403 and refused.json["error"] == "frozen"


def test_revoke_cancels_pending_requests_and_evicts_the_cache(tmp_path: Path) -> None:
    broker = make_broker(tmp_path, admins=("agent:ops",))
    read = {
        "service": "payments",
        "environment": "prod",
        "region": "us-east-1",
        "tier": "read",
        "backend": "aws",
    }
    broker.post("/v1/credentials", read)
    pending = broker.post(
        "/v1/credentials",
        {**read, "tier": "write", "resources": ["arn:aws:s3:::payments-prod-invoices/x"]},
    ).json
    assert len(broker.services.cache) == 1
    report = broker.post(
        "/v1/revoke", {"agent": "agent:payments-copilot", "reason": "rogue behaviour"}, agent=ADMIN
    ).json
    assert report["cancelled"] == 1 and report["cache_evicted"] == 1
    assert broker.services.store.get_request(pending["request_id"]).status == "cancelled"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"agent": "a", "service": "b", "reason": "x y z"},
        {"environment": "prod", "reason": "no service"},
        {"all": True},
        {"all": "yes", "reason": "bad type"},
    ],
)
def test_malformed_revocations_are_refused(tmp_path: Path, body: dict[str, Any]) -> None:
    broker = make_broker(tmp_path, admins=("agent:ops",))
    response = broker.post("/v1/revoke", body, agent=ADMIN)
    assert response.status_code == 400, response.json


def test_a_request_revoked_on_another_replica_is_not_served_from_this_cache(
    tmp_path: Path,
) -> None:
    """Revoking one request freezes nobody; the caches of other replicas must still drop it."""
    here = make_broker(tmp_path)
    there = make_broker(tmp_path)  # another replica: same store, its own cache
    read = {"service": "ledger", "environment": "prod", "tier": "read", "backend": "vault"}
    agent = "ledger-maintainer"
    first = here.post("/v1/credentials", read, agent=agent).json
    assert here.post("/v1/credentials", read, agent=agent).json["cached"] is True
    report = there.services.kill_switch.revoke(
        RevokeTarget(request_id=first["request_id"]), "ops", "leaked in a log"
    )
    assert report.backends["vault"].revoked == 1
    here.clock.advance(2)  # replicas re-read revocations at least every second
    again = here.post("/v1/credentials", read, agent=agent).json
    assert again["cached"] is False and again["request_id"] != first["request_id"]
