"""A broker whose STS and Vault clients go through fault-injecting proxies.

The scope is applied once per module to the session's moto and OpenBao (directly, not
through the proxies); each test gets fresh proxies, fresh issuers with fresh circuits
(whose clock the test moves), and a fresh broker app.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.apply.command import apply_scopes
from broker.apply.upstreams import HvacVaultManager
from broker.issuers.aws_accounts import AwsAccounts
from broker.issuers.aws_sts import StsIssuer
from broker.issuers.resilience import CircuitBreaker, RetryPolicy
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_token import VaultTokenIssuer
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set
from tests.fixtures.backends import shop_scope
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.faults import FaultProxy, fault_proxy
from tests.fixtures.moto import Moto
from tests.fixtures.openbao import OpenBao

DEADLINE = 2.0  # seconds: the broker's upstream deadline in these tests
VAULT_TIMEOUT = 1.0  # seconds: one Vault HTTP call (less than the deadline: a retry fits)
THRESHOLD = 3  # consecutive failed calls that open a circuit
COOLDOWN = 30.0  # seconds on the circuits' clock before the half-open trial
RETRY = RetryPolicy(deadline_seconds=DEADLINE, base_delay_seconds=0.05, max_delay_seconds=0.4)


class ManualClock:
    """The circuits' monotonic clock, moved by the test (no waiting for a cooldown)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FaultyBroker:
    broker: Broker
    service: str
    sts: FaultProxy
    vault: FaultProxy
    circuits: dict[str, CircuitBreaker]
    clock: ManualClock
    bao: OpenBao

    def body(self, backend: str) -> dict[str, str]:
        body = {"service": self.service, "environment": "prod", "tier": "read", "backend": backend}
        if backend == "aws":
            body["region"] = "us-east-1"
        return body


@pytest.fixture(scope="module")
def fault_scope(tmp_path_factory: pytest.TempPathFactory, moto: Moto, openbao: OpenBao) -> str:
    """A scope (AWS and Vault) applied to the session's servers; its directory's text."""
    name = f"faults{secrets.token_hex(3)}"
    directory = tmp_path_factory.mktemp("fault-scopes")
    (directory / f"{name}.yaml").write_text(shop_scope(name, None, None))
    loaded = load_scope_set(directory, LintContext(iam=iam_database()))
    assert not loaded.problems, loaded.problems
    sts = StsIssuer(moto.session(), endpoint_url=moto.url)
    lines: list[str] = []
    applied = apply_scopes(
        loaded.scope_set, AwsAccounts(sts), HvacVaultManager(openbao.client()), True, lines.append
    )
    assert applied.ok, lines
    return name


@pytest.fixture()
def faulty(
    tmp_path: Path, fault_scope: str, moto: Moto, openbao: OpenBao
) -> Iterator[FaultyBroker]:
    scopes = tmp_path / "scopes"
    scopes.mkdir()
    (scopes / f"{fault_scope}.yaml").write_text(shop_scope(fault_scope, None, None))
    clock = ManualClock()
    circuits = {
        name: CircuitBreaker(name, threshold=THRESHOLD, cooldown_seconds=COOLDOWN, clock=clock)
        for name in ("aws", "vault")
    }
    with fault_proxy(moto.url) as sts_proxy, fault_proxy(openbao.url) as vault_proxy:
        issuers = {
            "aws": StsIssuer(
                moto.session(), endpoint_url=sts_proxy.url, retry=RETRY, circuit=circuits["aws"]
            ),
            "vault": VaultTokenIssuer(
                VaultCaller(
                    "vault",
                    make_client(vault_proxy.url, openbao.root_token, timeout=VAULT_TIMEOUT),
                    RETRY,
                    circuits["vault"],
                ),
                vault_proxy.url,
            ),
        }
        broker = make_broker(tmp_path, real_issuers=issuers, upstream_deadline_seconds=DEADLINE)
        try:
            yield FaultyBroker(
                broker, fault_scope, sts_proxy, vault_proxy, circuits, clock, openbao
            )
        finally:
            broker.services.close()
