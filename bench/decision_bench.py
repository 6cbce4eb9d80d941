"""Decision latency: from the approver's deciding POST to the agent holding credentials.

Two `broker serve` replicas (gunicorn, two workers each) share one PostgreSQL database,
with OpenBao issuing Vault tokens. For each approval an agent opens a write request and
waits for it through the client package (``BrokerClient.complete``: a long poll, then the
collection), while an approver who already has the approval page open submits the
decision. Measured: the deciding POST's start to ``complete`` returning the credentials.

Arms, side by side: the agent long-polls the replica that takes the decision, or the
other one (a NOTIFY crossing replicas). The last line is
``decision: p50 X ms, p99 Y ms over N approvals`` (all arms together).
"""

from __future__ import annotations

import re
import secrets
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import requests
import yaml
from broker_client import BrokerClient, PendingRequest

from bench.stack import POSTGRES, ROOT
from broker.apply.command import apply_scopes
from broker.apply.upstreams import HvacVaultManager
from broker.approvals.links import LinkSigner
from broker.config import load_settings
from broker.devstack.processes import ServerProcess, free_port
from broker.devstack.servers import start_moto, start_openbao
from broker.identity.mint import mint_agent_token
from broker.keys import load_keys
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set

APPROVALS_PER_ARM = 30
SERVICE = "decide"
AGENT = "decision-bench"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

SCOPE = textwrap.dedent(f"""\
    apiVersion: broker/v1
    kind: Scope
    metadata:
      service: {SERVICE}
      description: decision latency benchmark
    requesters:
      - subject: agent:{AGENT}
    environments:
      prod:
        vault:
          kv:
            mount: secret
            paths: ["{SERVICE}/${{env}}/*"]
    tiers:
      read:
        ttl: 15m
      write:
        ttl: 15m
        approval:
          approvers: [alice]
          required: 1
    """)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Stack:
    """OpenBao, a PostgreSQL database and two replicas on it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bao = start_openbao(directory)
        self.moto = start_moto(directory)  # the broker's readiness checks its AWS upstream
        self.database = f"broker_decide_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')
        store_url = f"{POSTGRES.rsplit('/', 1)[0]}/{self.database}"
        scopes = directory / "scopes"
        scopes.mkdir()
        (scopes / f"{SERVICE}.yaml").write_text(SCOPE)
        loaded = load_scope_set(scopes, LintContext(iam=iam_database()))
        assert not loaded.problems, loaded.problems
        applied = apply_scopes(
            loaded.scope_set, None, HvacVaultManager(self.bao.client()), True, lambda _l: None
        )
        assert applied.ok, applied.problems
        self.config = directory / "broker.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "scopes_dir": str(scopes),
                    "state_dir": str(directory / "state"),
                    "public_url": "http://127.0.0.1:8080",
                    "workers": 2,
                    "threads": 8,
                    "approvers": {"alice": {"name": "Alice", "email": "alice@example.com"}},
                    "vault": {"url": self.bao.url},
                    "aws": {"endpoint_url": self.moto.url},
                }
            )
        )
        self.keys = load_keys(directory / "state")  # before the replicas: they share them
        self.replicas: list[ServerProcess] = []
        self.urls: list[str] = []
        env = {
            "BROKER_STORE_URL": store_url,
            "BROKER_VAULT_TOKEN": self.bao.root_token,
            "AWS_ACCESS_KEY_ID": self.moto.broker_key["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.moto.broker_key["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
        }
        for name in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = ServerProcess(
                [
                    sys.executable,
                    "-m",
                    "broker.cli",
                    "serve",
                    "--config",
                    str(self.config),
                    "--bind",
                    f"127.0.0.1:{port}",
                ],
                directory / f"replica-{name}.log",
                env=env,
            )
            process.start(
                lambda u=url: requests.get(f"{u}/readyz", timeout=1).status_code == 200,
                timeout=90,
            )
            self.replicas.append(process)
            self.urls.append(url)
        settings = load_settings(self.config)
        self.token = mint_agent_token(self.keys, settings.identity.local, AGENT, 3600)
        self.signer = LinkSigner(self.keys.link_secret, settings.public_url, 3600)

    def stop(self) -> None:
        for process in self.replicas:
            process.stop()
        self.moto.stop()
        self.bao.stop()
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (self.database,),
            )
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}"')


def one_decision(stack: Stack, agent_url: str, approver_url: str) -> float:
    """Seconds from the deciding POST to the agent holding the credentials."""
    client = BrokerClient(agent_url, stack.token, timeout=60)
    pending = client.request(
        SERVICE,
        "prod",
        "write",
        "vault",
        resources=[f"{SERVICE}/prod/config"],
        justification="benchmark the decision latency",
    )
    assert isinstance(pending, PendingRequest)
    held: list[float] = []

    def agent() -> None:
        client.complete(pending.request_id, timeout=60)
        held.append(time.perf_counter())

    link = f"/approve/{stack.signer.mint(pending.request_id, 'alice')}"
    browser = requests.Session()
    page = browser.get(f"{approver_url}{link}", timeout=30)
    csrf = _CSRF.search(page.text)
    assert page.status_code == 200 and csrf, page.text[:300]
    waiting = threading.Thread(target=agent)
    waiting.start()
    time.sleep(0.3)  # the agent is in its long poll
    decided = time.perf_counter()
    answer = browser.post(
        f"{approver_url}{link}",
        data={"csrf_token": csrf.group(1), "decision": "approve"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.status_code
    waiting.join(60)
    assert held, "the agent did not get its credentials"
    return held[0] - decided


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-decision-") as folder:
        stack = Stack(Path(folder))
        try:
            one_decision(stack, stack.urls[0], stack.urls[0])  # warm both replicas
            one_decision(stack, stack.urls[1], stack.urls[1])
            arms = {
                "same replica": (stack.urls[0], stack.urls[0]),
                "other replica": (stack.urls[0], stack.urls[1]),
            }
            results: dict[str, list[float]] = {name: [] for name in arms}
            for _ in range(APPROVALS_PER_ARM):  # interleaved: load drifts hit both arms
                for name, (agent_url, approver_url) in arms.items():
                    results[name].append(one_decision(stack, agent_url, approver_url) * 1000)
        finally:
            stack.stop()
    everything = [v for values in results.values() for v in values]
    print(f"{'arm':<14} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in results.items():
        print(
            f"{name:<14} {statistics.median(values):8.1f} {percentile(values, 0.99):8.1f} "
            f"{statistics.fmean(values):8.1f}"
        )
    print(
        f"decision: p50 {statistics.median(everything):.0f} ms, "
        f"p99 {percentile(everything, 0.99):.0f} ms over {len(everything)} approvals"
    )


if __name__ == "__main__":
    main()
