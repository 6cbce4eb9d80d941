"""The kill switch at scale: 1,000 live credentials, `broker revoke`, every one used after.

One agent holds 1,000 live credentials, all issued by a running `broker serve` (SQLite, two
workers): 500 Vault tokens (OpenBao), 400 AWS sessions on 20 tier roles (the AWS stand-in,
which enforces session policies and the revocation policy's conditions, as AWS does) and
100 database logins (Vault's database engine on PostgreSQL). Every credential is used
before the revocation (it works) and after it: a KV read with each token, an S3 read with
each session, a PostgreSQL login with each database login. A credential the broker reports
revoked that still works is a failure of the benchmark, whatever the time.

Arms, one after another in one run, each with 1,000 credentials of its own:

- serial: `broker revoke --agent`, with ``limits.revocation_concurrency: 1`` (Vault tokens
  and leases revoked one after another, as before);
- parallel: the same command with the default concurrency;
- all: `broker revoke --all`, the 1,000 credentials spread over 50 agents (20 each).

Timed: the command, from its start to its exit (Python's start, loading the settings and
scopes, the revocation, the report), as an operator runs it during an incident; within
it, the revocation itself (its freeze record to its summary record). Per credential: how
long its upstream took to confirm (``took_ms`` of its revoke record: the token or lease
revocation; for a session, the deny written on its role) and when it was dead, counted
from the command's start. Last line:
``killswitch: 1000 credentials dead in X s (p99 per credential Y ms)`` (the parallel arm).
"""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import psycopg
import requests
import yaml
from botocore.config import Config
from botocore.exceptions import ClientError

from bench.procstat import pid_of, process_cpu
from bench.stack import ROOT, BenchStack, bench_stack
from broker.config import load_settings
from broker.devstack.servers import MOTO_ACCOUNT
from broker.store.records import AuditRecord
from broker.store.sql import SqlStore

ROLES = 20  # tier roles (one scope each)
AGENTS_FOR_ALL = 50
PER_BACKEND = {"vault": 500, "aws": 400, "database": 100}
TOTAL = sum(PER_BACKEND.values())
BUCKET, KEY = "ks-data", "probe"
ISSUE_THREADS = 16
CHECK_THREADS = 16
TARGET_SECONDS = 2.0


def scope(index: int) -> str:
    service = f"ks{index:02d}"
    return textwrap.dedent(f"""\
        apiVersion: broker/v1
        kind: Scope
        metadata:
          service: {service}
          description: kill switch benchmark, tier role {index + 1} of {ROLES}
        requesters:
          - claims:
              sub: "agent:ks-*"
        environments:
          prod:
            aws:
              account: "{MOTO_ACCOUNT}"
              regions: [us-east-1]
              roles:
                read: "arn:aws:iam::${{account}}:role/broker/{service}-prod-read"
            vault:
              kv:
                mount: secret
                paths: ["{service}/${{env}}/*"]
            database:
              mount: database
              connection: bench-prod
              objects: [public.items]
              roles:
                read: {service}-prod-read
        tiers:
          read:
            ttl: 1h
            aws:
              - actions: [s3:GetObject]
                resources: ["arn:aws:s3:::{BUCKET}/*"]
        """)


@dataclass(frozen=True)
class Held:
    """One live credential, as the agent received it."""

    agent: str
    backend: str
    service: str
    body: dict[str, str]

    @property
    def correlation(self) -> str:
        return self.body.get("access_key_id") or self.body.get("accessor") or self.body["lease_id"]


def plan(agents: list[str]) -> list[tuple[str, str, str, int]]:
    """(agent, backend, service, duration) for 1,000 distinct credentials: each asks a
    different scope or lifetime, so none is the cached copy of another."""
    asked = []
    for backend, count in PER_BACKEND.items():
        for j in range(count):
            asked.append((agents[j % len(agents)], backend, f"ks{j % ROLES:02d}", 900 + j // ROLES))
    return asked


def issue_all(stack: BenchStack, url: str, agents: list[str]) -> list[Held]:
    tokens = {agent: stack.token(agent.removeprefix("agent:"), 3600) for agent in agents}
    local = threading.local()

    def ask(item: tuple[str, str, str, int]) -> Held:
        agent, backend, service, duration = item
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body: dict[str, Any] = {
            "service": service,
            "environment": "prod",
            "tier": "read",
            "backend": backend,
            "duration": duration,
        }
        if backend == "aws":
            body["region"] = "us-east-1"
        response = local.session.post(
            f"{url}/v1/credentials",
            json=body,
            headers={"Authorization": f"Bearer {tokens[agent]}"},
            timeout=60,
        )
        answer = response.json()
        if response.status_code != 200 or answer.get("cached"):
            raise RuntimeError(f"issuance failed: {response.status_code} {answer}")
        return Held(agent, backend, service, answer["credentials"])

    with ThreadPoolExecutor(ISSUE_THREADS) as pool:
        return list(pool.map(ask, plan(agents)))


class Checker:
    """Uses a credential the way its holder would; True when the upstream let it act."""

    def __init__(self, stack: BenchStack) -> None:
        self.vault_url = stack.bao.url
        self.moto_url = stack.moto.url
        self.botocore = botocore.session.get_session()
        self.local = threading.local()

    def works(self, held: Held) -> bool:
        if held.backend == "vault":
            return self._kv_read(held)
        if held.backend == "aws":
            return self._s3_read(held)
        return self._login(held)

    def _kv_read(self, held: Held) -> bool:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        response: requests.Response = self.local.session.get(
            f"{self.vault_url}/v1/secret/data/{held.service}/prod/{KEY}",
            headers={"X-Vault-Token": held.body["token"]},
            timeout=30,
        )
        if response.status_code not in (200, 403):
            raise RuntimeError(f"KV read answered {response.status_code}")
        return response.status_code == 200

    def _s3_read(self, held: Held) -> bool:
        s3: Any = self.botocore.create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=self.moto_url,
            aws_access_key_id=held.body["access_key_id"],
            aws_secret_access_key=held.body["secret_access_key"],
            aws_session_token=held.body["session_token"],
            config=Config(retries={"total_max_attempts": 1}),
        )
        try:
            s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("AccessDenied", "ExpiredToken"):
                return False
            raise
        return True

    def _login(self, held: Held) -> bool:
        body = held.body
        url = f"postgresql://{body['username']}:{body['password']}@{body['host']}:{body['port']}"
        try:
            with psycopg.connect(f"{url}/{body['database']}", connect_timeout=10) as connection:
                connection.execute("SELECT count(*) FROM public.items")
        except psycopg.OperationalError as e:
            if "does not exist" in str(e) or "authentication failed" in str(e):
                return False
            raise
        return True


def working(checker: Checker, held: list[Held]) -> list[Held]:
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        results = list(pool.map(checker.works, held))
    return [h for h, ok in zip(held, results, strict=True) if ok]


@dataclass
class ArmResult:
    label: str
    command_seconds: float
    cpu_seconds: dict[str, float]  # the command's, and each upstream's, while it ran
    revocation_seconds: float
    exit_code: int
    alive_before: int
    alive_after: list[Held]
    took_ms: dict[str, list[float]]  # per backend, per credential: its upstream's confirmation
    dead_after_ms: list[float]  # per credential: from the command's start


def revoke(stack: BenchStack, config: Path, target: list[str]) -> tuple[float, float, str, int]:
    """Run `broker revoke` as an operator would; (seconds, wall start, output, exit code)."""
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "broker.cli", "revoke", *target]
    command += ["--reason", "benchmark: agent gone rogue", "--config", str(config)]
    wall = time.time()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - started, wall, done.stdout + done.stderr, done.returncode


def revoke_records(store_url: str, since: float) -> list[AuditRecord]:
    store = SqlStore.from_url(store_url, migrate=False)
    try:
        return [r for r in store.audit_records() if r.at >= since and r.action in WATCHED]
    finally:
        store.close()


WATCHED = ("freeze", "revoke")


def run_arm(
    stack: BenchStack,
    url: str,
    checker: Checker,
    label: str,
    agents: list[str],
    config: Path,
    target: list[str],
) -> ArmResult:
    held = issue_all(stack, url, agents)
    alive_before = len(working(checker, held))
    upstreams = {"Vault": pid_of(stack.bao.process), "AWS stand-in": pid_of(stack.moto.process)}
    before = {name: process_cpu(pid) for name, pid in upstreams.items()}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, wall, output, code = revoke(stack, config, target)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"command": after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime}
    cpu.update((name, process_cpu(pid) - before[name]) for name, pid in upstreams.items())
    alive_after = working(checker, held)
    records = revoke_records(load_settings(stack.config).database_url, wall)
    ours = {h.correlation for h in held}
    per_credential = [
        r
        for r in records
        if r.action == "revoke" and r.outcome == "revoked" and correlation_of(r) in ours
    ]
    freeze = min((r.at for r in records if r.action == "freeze"), default=wall)
    summary = max(
        (r.at for r in records if r.action == "revoke" and "counts" in r.details), default=wall
    )
    reported = [line for line in output.splitlines() if line.startswith("Revoked")]
    if not reported:
        raise RuntimeError(f"{label}: `broker revoke` did not report: {output[-2000:]}")
    return ArmResult(
        label=label,
        command_seconds=seconds,
        cpu_seconds=cpu,
        revocation_seconds=summary - freeze,
        exit_code=code,
        alive_before=alive_before,
        alive_after=alive_after,
        took_ms={
            backend: [
                float(r.details["took_ms"])
                for r in per_credential
                if r.details.get("backend") == backend and "took_ms" in r.details
            ]
            for backend in PER_BACKEND
        },
        dead_after_ms=[(r.at - wall) * 1000 for r in per_credential],
    )


def correlation_of(record: AuditRecord) -> str | None:
    for key in ("access_key_id", "accessor", "lease_id"):
        if record.details.get(key):
            return str(record.details[key])
    return None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{statistics.median(values):.1f}/{percentile(values, 0.99):.1f}"


def all_took(result: ArmResult) -> list[float]:
    return [t for values in result.took_ms.values() for t in values]


def describe(result: ArmResult) -> list[str]:
    verdict = (
        "every credential dead"
        if not result.alive_after
        else f"{len(result.alive_after)} STILL WORK"
    )
    dead = result.dead_after_ms or [0.0]
    cpu = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.cpu_seconds.items())
    took = ", ".join(f"{backend} {spread(v)}" for backend, v in result.took_ms.items())
    return [
        f"  {result.label}: {result.command_seconds:.2f} s from the command's start to its exit "
        f"(the revocation itself: {result.revocation_seconds:.2f} s); CPU used meanwhile: {cpu}",
        f"    per credential, upstream confirmation p50/p99 ms: {took}, all "
        f"{spread(all_took(result))}; dead after (from the start) p50 "
        f"{statistics.median(dead) / 1000:.2f} s, p99 {percentile(dead, 0.99) / 1000:.2f} s",
        f"    {result.alive_before}/{TOTAL} worked before; after: {verdict}; exit "
        f"{result.exit_code}",
    ]


def with_limits(config: Path, name: str, **limits: Any) -> Path:
    data = yaml.safe_load(config.read_text())
    data.setdefault("limits", {}).update(limits)
    path = config.with_name(name)
    path.write_text(yaml.safe_dump(data))
    return path


def seed(stack: BenchStack) -> None:
    """What the credentials are used on: an S3 object, a KV secret under every scope."""
    s3 = stack.moto.client("s3", stack.moto.admin_key)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"probe")
    vault = stack.bao.client()
    for i in range(ROLES):
        vault.secrets.kv.v2.create_or_update_secret(
            path=f"ks{i:02d}/prod/{KEY}", secret={"probe": "1"}, mount_point="secret"
        )


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    # The command starts from bytecode, as an installed broker does (pip compiles it); a
    # checkout run with PYTHONDONTWRITEBYTECODE would compile every module at each start.
    compileall.compile_dir(ROOT / "broker", quiet=1)
    scopes = {f"ks{i:02d}.yaml": scope(i) for i in range(ROLES)}
    with (
        tempfile.TemporaryDirectory(prefix="broker-killswitch-") as tmp,
        bench_stack(Path(tmp), scopes=scopes) as stack,
    ):
        seed(stack)
        url = stack.start_broker(workers=2)
        checker = Checker(stack)
        serial_config = with_limits(stack.config, "serial.yaml", revocation_concurrency=1)
        arms: list[tuple[str, list[str], Path, list[str]]] = [
            ("serial", ["agent:ks-serial"], serial_config, ["--agent", "agent:ks-serial"]),
            ("parallel", ["agent:ks-one"], stack.config, ["--agent", "agent:ks-one"]),
            (
                "all",
                [f"agent:ks-many-{i}" for i in range(AGENTS_FOR_ALL)],
                stack.config,
                ["--all"],
            ),
        ]
        results = []
        print(
            f"kill switch: {TOTAL} live credentials per arm ({PER_BACKEND['vault']} Vault tokens, "
            f"{PER_BACKEND['aws']} AWS sessions on {ROLES} tier roles, "
            f"{PER_BACKEND['database']} database logins); load average before: {load()}",
            flush=True,
        )
        for label, agents, config, target in arms:
            result = run_arm(stack, url, checker, label, agents, config, target)
            results.append(result)
            print("\n".join(describe(result)), flush=True)
    serial, parallel, everything = results
    print(
        f"  serial: --agent, limits.revocation_concurrency 1; parallel: --agent, the default "
        f"(16); all: --all, {AGENTS_FOR_ALL} agents x {TOTAL // AGENTS_FOR_ALL} credentials. "
        "Times from the command's start to its exit."
    )
    print(
        f"  parallel over serial: {parallel.command_seconds / serial.command_seconds:.2f} "
        f"(command), {parallel.revocation_seconds / serial.revocation_seconds:.2f} "
        f"(revocation); target <= {TARGET_SECONDS:.0f} s: "
        + ("meets" if parallel.command_seconds <= TARGET_SECONDS else "MISSES")
        + " (--agent), "
        + ("meets" if everything.command_seconds <= TARGET_SECONDS else "MISSES")
        + f" (--all); load average after: {load()}"
    )
    if any(r.alive_after for r in results):
        print("  FAILED: a credential reported revoked still works")
    dead = TOTAL - len(parallel.alive_after)
    print(
        f"killswitch: {dead} credentials dead in {parallel.command_seconds:.2f} s "
        f"(p99 per credential {percentile(all_took(parallel) or [0.0], 0.99):.0f} ms)"
    )


if __name__ == "__main__":
    main()
