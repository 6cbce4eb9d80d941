"""A real stack for benchmarks: OpenBao, moto, a PostgreSQL database, and `broker serve`.

The broker runs as its own gunicorn process(es), as in production, against the same
upstreams the benchmark also calls directly, so both are measured side by side.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
import yaml

from bench.raft import start_openbao_raft
from bench.upstream_calls import AGENT_PREFIX, SERVICE
from broker.apply.command import apply_scopes
from broker.apply.upstreams import HvacVaultManager
from broker.config import load_settings
from broker.devstack.processes import ServerProcess, free_port
from broker.devstack.servers import MOTO_ACCOUNT, Moto, OpenBao, start_moto, start_openbao
from broker.identity.mint import mint_agent_token
from broker.keys import load_keys
from broker.policy.compiler import dumps
from broker.policy.grant import compile_grant
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import ScopeSet, load_scope_set
from broker.wiring import build_accounts, build_sts, build_vault_client

POSTGRES = os.environ.get("BROKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent

SCOPE = textwrap.dedent(f"""\
    apiVersion: broker/v1
    kind: Scope
    metadata:
      service: {SERVICE}
      description: benchmark scope on every backend
    requesters:
      - claims:
          sub: "agent:{AGENT_PREFIX}*"
    environments:
      prod:
        aws:
          account: "{MOTO_ACCOUNT}"
          regions: [us-east-1]
          roles:
            read: "arn:aws:iam::${{account}}:role/broker/bench-prod-read"
        vault:
          kv:
            mount: secret
            paths: ["bench/${{env}}/*"]
        database:
          mount: database
          connection: bench-prod
          objects: [public.items]
          roles:
            read: bench-prod-read
    tiers:
      read:
        ttl: 15m
        aws:
          - actions: [s3:GetObject, s3:GetObjectTagging]
            resources: ["arn:aws:s3:::bench-${{env}}-data/*"]
          - actions: [s3:ListBucket]
            resources: ["arn:aws:s3:::bench-${{env}}-data"]
          - actions: [dynamodb:GetItem, dynamodb:Query]
            resources: ["arn:aws:dynamodb:${{region}}:${{account}}:table/bench-${{env}}"]
    """)


@dataclass
class BenchStack:
    directory: Path
    bao: OpenBao
    moto: Moto
    scope_set: ScopeSet
    config: Path
    database: str
    env: dict[str, str]
    brokers: list[ServerProcess] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    others: list[ServerProcess] = field(default_factory=list)  # servers that are not brokers

    def database_grant(self, duration: int = 900) -> dict[str, Any]:
        """The database part of the benchmark scope's read grant (what the broker's issuer
        makes a per-request role of), as JSON-ready values."""
        scope = self.scope_set.scopes[SERVICE]
        env = scope.environments["prod"]
        grant = compile_grant(scope, env, "read", "database", None, (), duration, None)
        return dict(grant.as_dict()["database"])

    def token(self, agent: str, ttl: int = 3600) -> str:
        settings = load_settings(self.config)
        return mint_agent_token(load_keys(settings.state_dir), settings.identity.local, agent, ttl)

    def start_broker(
        self, workers: int = 1, store_url: str | None = None, threads: int | None = None
    ) -> str:
        """`broker serve` (gunicorn) on a free port; its URL once /readyz answers 200. Its
        threads per worker are the config's (``bench_stack(threads=...)``) unless given."""
        port = free_port()
        env = {"BROKER_STORE_URL": store_url} if store_url else {}
        config = self.config
        if threads is not None:
            settings = yaml.safe_load(self.config.read_text())
            config = self.directory / f"broker-{threads}-threads.yaml"
            config.write_text(yaml.safe_dump({**settings, "threads": threads}))
        args = ["-m", "broker.cli", "serve", "--config", str(config)]
        args += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
        url, process = self._start(args, port, env, "/readyz", 200)
        self.brokers.append(process)
        self.urls.append(url)
        return url

    def start_forwarder(self, threads: int = 8) -> str:
        """`bench.forwarder` under gunicorn as the broker runs (gthread, one worker)."""
        port = free_port()
        compiled = self.scope_set.compiled[SERVICE]["prod"]["read"]["aws"]
        env = {
            "BENCH_VAULT_URL": self.bao.url,
            "BENCH_VAULT_TOKEN": self.bao.root_token,
            "BENCH_MOTO_URL": self.moto.url,
            "BENCH_ROLE_ARN": compiled["role_arn"],
            "BENCH_SESSION_POLICY": dumps(compiled["session_policies"]["us-east-1"]),
            "BENCH_DATABASE_GRANT": json.dumps(self.database_grant()),
        }
        args = ["-m", "gunicorn", "--worker-class", "gthread", "--threads", str(threads)]
        args += ["--workers", "1", "--keep-alive", "5", "--bind", f"127.0.0.1:{port}"]
        args += ["bench.forwarder:create_app()"]
        url, process = self._start(args, port, env, "/", 404)
        self.others.append(process)
        return url

    def _start(
        self, args: list[str], port: int, env: dict[str, str], probe: str, ready: int
    ) -> tuple[str, ServerProcess]:
        url = f"http://127.0.0.1:{port}"
        process = ServerProcess(
            [sys.executable, *args],
            self.directory / f"server-{port}.log",
            env={**self.env, **env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
        )
        process.start(
            lambda: requests.get(f"{url}{probe}", timeout=1).status_code == ready, timeout=60
        )
        return url, process

    def stop(self) -> None:
        for process in self.brokers + self.others:
            process.stop()
        self.moto.stop()
        self.bao.stop()
        base = POSTGRES.rsplit("/", 1)[0]
        # The logins Vault made here and did not drop: those granted on this database's
        # tables (roles are the cluster's, other databases' logins are not ours).
        with psycopg.connect(f"{base}/{self.database}", autocommit=True) as connection:
            roles = connection.execute(
                "SELECT DISTINCT grantee FROM information_schema.role_table_grants "
                "WHERE table_schema = 'public' AND grantee LIKE 'v-%%'"
            ).fetchall()
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (self.database,),
            )
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}"')
            for (role,) in roles:
                connection.execute(f'DROP ROLE IF EXISTS "{role}"')


@contextmanager
def bench_stack(
    directory: Path,
    threads: int = 8,
    raft: bool = False,
    scopes: Mapping[str, str] | None = None,
) -> Iterator[BenchStack]:
    """The stack; ``raft``: OpenBao on Raft storage (as production runs it), not the dev
    server's memory; ``scopes``: file name -> scope text (default: the benchmark scope),
    their database roles on the ``bench-prod`` connection (table ``public.items``)."""
    directory.mkdir(parents=True, exist_ok=True)
    bao = start_openbao_raft(directory) if raft else start_openbao(directory)
    moto = start_moto(directory)
    database = f"broker_bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    base = POSTGRES.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/{database}", autocommit=True) as connection:
        connection.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
    client = bao.client()
    client.sys.enable_secrets_engine("database", path="database")
    host = POSTGRES.split("@", 1)[1].split("/", 1)[0]
    client.secrets.database.configure(
        name="bench-prod",
        plugin_name="postgresql-database-plugin",
        mount_point="database",
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{host}/{database}"
        "?sslmode=disable",
        username="postgres",
        password="unused",
        allowed_roles="*",
    )
    scopes_dir = directory / "scopes"
    scopes_dir.mkdir(exist_ok=True)
    for name, text in (scopes or {"bench.yaml": SCOPE}).items():
        (scopes_dir / name).write_text(text)
    result = load_scope_set(scopes_dir, LintContext(iam=iam_database()))
    assert not result.problems, result.problems
    config = directory / "broker.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "scopes_dir": str(scopes_dir),
                "state_dir": str(directory / "state"),
                "public_url": "http://127.0.0.1:8080",
                "threads": threads,
                "aws": {"endpoint_url": moto.url},
                "vault": {"url": bao.url},
                "limits": {"upstream_deadline": "10s"},
            }
        )
    )
    env = {
        "AWS_ACCESS_KEY_ID": moto.broker_key["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": moto.broker_key["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "BROKER_VAULT_TOKEN": bao.root_token,
    }
    os.environ.update(env)
    settings = load_settings(config)
    vault = build_vault_client(settings)
    outcome = apply_scopes(
        result.scope_set,
        build_accounts(settings, build_sts(settings)),
        HvacVaultManager(vault) if vault else None,
        True,
        lambda _l: None,
    )
    assert outcome.ok, outcome.problems
    stack = BenchStack(directory, bao, moto, result.scope_set, config, database, env)
    try:
        yield stack
    finally:
        stack.stop()
