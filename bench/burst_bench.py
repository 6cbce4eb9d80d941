"""Session-start storm: 5,000 distinct agents ask for read credentials within 10 seconds.

Half the agents ask for AWS (AssumeRole on the AWS stand-in, which authorizes every call
as AWS does) and half for Vault tokens (OpenBao), spread evenly over the window by 64
client threads. Arms, one after another in one run, on the same upstreams:

- direct: the same 5,000 upstream calls the broker would make (`bench.upstream_calls`),
  from the same 64 threads on the same schedule, with no broker: what the upstreams
  themselves allow;
- 2 replicas: two `broker serve` (one worker of 16 threads each; BENCH_REPLICA_WORKERS
  and BENCH_REPLICA_THREADS change it) sharing PostgreSQL, the agents alternating between
  them as behind a load balancer;
- 1 replica: one `broker serve` (two workers) on SQLite, the embedded default.

Checked for the broker arms: every agent served (0 errors), no credential handed to two
agents (duplicates) and none to the wrong agent (crossed: every AWS session's
SourceIdentity, and one Vault token in ten's own metadata, name the agent that asked), and
the upstream calls: what the brokers' metrics count and the tokens Vault itself created
(its accessor list), against one per agent (a cache must not add any). Reported: p50/p99
latency from each agent's scheduled start, the time until the last agent is served and its
ratio to the direct arm's (target: at most 1.5), memory per gunicorn worker at rest and at
its peak. Midway through, the scope file changes and is reloaded by the running brokers:
no request may fail. The last line sums up the two-replica arm.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import psycopg
import requests

from bench.issuance_bench import direct_calls
from bench.procstat import pid_of, process_cpu, rss_mb
from bench.stack import POSTGRES, BenchStack, bench_stack
from bench.upstream_calls import AGENT_PREFIX, SERVICE
from broker.issuers.source_identity import source_identity
from broker.store.sql import SqlStore

AGENTS = int(os.environ.get("BENCH_AGENTS", "5000"))
CLIENT_THREADS = 64
WINDOW_SECONDS = float(os.environ.get("BENCH_WINDOW", "10"))
TARGET_RATIO = 1.5
# Each replica one worker of 16 threads: on two cores shared with the upstreams, a second
# worker per replica added processes competing for them (and a second journal per replica:
# half the group commit's batching), for 15 % more of the brokers' CPU per agent than one
# worker with as many threads in all (docs/performance.md).
REPLICA_WORKERS = int(os.environ.get("BENCH_REPLICA_WORKERS", "1"))
REPLICA_THREADS = int(os.environ.get("BENCH_REPLICA_THREADS", "16"))


@dataclass
class Outcome:
    """One arm's answers: (agent index, status, seconds from its scheduled start, body)."""

    answers: list[tuple[int, int, float, dict[str, Any]]] = field(default_factory=list)
    last_served_s: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # used during the storm

    @property
    def failures(self) -> list[tuple[int, int]]:
        return [(i, code) for i, code, _, _ in self.answers if code != 200]

    @property
    def latencies(self) -> list[float]:
        return sorted(e for _, code, e, _ in self.answers if code == 200)


def backend_of(i: int) -> str:
    return "aws" if i % 2 == 0 else "vault"


def storm(call: Callable[[int], tuple[int, dict[str, Any]]]) -> Outcome:
    """``call(i)`` for every agent, each at its moment of the window, from the client
    threads; a call that raises counts as a failure (status 0)."""
    outcome = Outcome()
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def ask(i: int) -> None:
        scheduled = start + i * WINDOW_SECONDS / AGENTS
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        try:
            code, body = call(i)
        except Exception as e:  # noqa: BLE001 - a failed call is what is being counted
            code, body = 0, {"error": type(e).__name__}
        elapsed = time.perf_counter() - scheduled
        with lock:
            outcome.answers.append((i, code, elapsed, body))

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(ask, range(AGENTS)))
    outcome.last_served_s = (
        max(i * WINDOW_SECONDS / AGENTS + e for i, code, e, _ in outcome.answers if code == 200)
        if outcome.latencies
        else float("inf")
    )
    return outcome


def direct(stack: BenchStack) -> Outcome:
    calls = direct_calls(stack)
    return measured(stack, lambda: storm(lambda i: (200, calls[backend_of(i)](i))))


def measured(stack: BenchStack, run: Callable[[], Outcome], store_url: str = "") -> Outcome:
    """``run``, with the CPU each party used meanwhile (this process: the clients; with a
    PostgreSQL store, its server processes serving the brokers)."""
    before, own = cpu_of(stack), time.process_time()
    database = postgres_cpu(store_url)
    outcome = run()
    after = cpu_of(stack)
    outcome.cpu_seconds = {name: after[name] - before[name] for name in before}
    outcome.cpu_seconds["clients"] = time.process_time() - own
    if store_url.startswith("postgresql"):
        used = postgres_cpu(store_url)
        outcome.cpu_seconds["PostgreSQL"] = sum(
            seconds - database.get(pid, 0.0) for pid, seconds in used.items()
        )
    return outcome


def postgres_cpu(store_url: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL server process connected to the store's
    database (the brokers' pooled connections, alive for the whole storm)."""
    if not store_url.startswith("postgresql"):
        return {}
    name = store_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchall()
    return {int(pid): process_cpu(int(pid)) for (pid,) in rows}


def cpu_of(stack: BenchStack) -> dict[str, float]:
    """CPU used so far by the upstreams and by the brokers (masters and workers)."""
    brokers = [b.process.pid for b in stack.brokers if b.process is not None]
    return {
        "brokers": sum(process_cpu(pid) for pid in brokers + workers_of(stack)),
        "Vault": process_cpu(pid_of(stack.bao.process)),
        "AWS stand-in": process_cpu(pid_of(stack.moto.process)),
    }


def workers_of(stack: BenchStack) -> list[int]:
    pids: list[int] = []
    for broker in stack.brokers:
        assert broker.process is not None
        out = subprocess.run(
            ["pgrep", "-P", str(broker.process.pid)], capture_output=True, text=True
        ).stdout.split()
        pids.extend(int(p) for p in out)
    return pids


def reloads(store_url: str, since: float) -> int:
    """Scope reloads the replicas recorded (each worker reloads on its own)."""
    store = SqlStore.from_url(store_url, migrate=False)
    try:
        return sum(1 for r in store.audit_records(since=since) if r.action == "scope_reload")
    finally:
        store.close()


_UPSTREAM = re.compile(
    r'^broker_upstream_latency_seconds_count\{backend="(\w+)",outcome="(\w+)"\} ([\d.e+]+)$',
    re.MULTILINE,
)


def upstream_calls_made(urls: list[str]) -> dict[str, int]:
    """The brokers' own count of upstream calls, per backend (every worker of each)."""
    counts: dict[str, int] = {}
    for url in urls:
        text = requests.get(f"{url}/metrics", timeout=30).text
        for backend, _outcome, value in _UPSTREAM.findall(text):
            counts[backend] = counts.get(backend, 0) + int(float(value))
    return counts


def vault_tokens(stack: BenchStack) -> int:
    """Tokens Vault holds now (its accessor list): what it created, from its own side."""
    listed = stack.bao.client().auth.token.list_accessors()
    return len(listed["data"]["keys"])


@dataclass
class BrokerResult:
    outcome: Outcome
    duplicates: int
    crossed: int
    rss_rest_mb: float
    rss_peak_mb: float
    workers: int
    reloads: int
    calls: dict[str, int]
    vault_created: int


def through_brokers(stack: BenchStack, urls: list[str], label: str, store_url: str) -> BrokerResult:
    tokens = [stack.token(f"{AGENT_PREFIX}{label}-{i}", 3600) for i in range(AGENTS)]
    sessions = threading.local()

    def call(i: int) -> tuple[int, dict[str, Any]]:
        backend = backend_of(i)
        body: dict[str, Any] = {
            "service": SERVICE,
            "environment": "prod",
            "tier": "read",
            "backend": backend,
        }
        if backend == "aws":
            body["region"] = "us-east-1"
        if not hasattr(sessions, "client"):
            sessions.client = requests.Session()
        response = sessions.client.post(
            f"{urls[i % len(urls)]}/v1/credentials",
            json=body,
            headers={"Authorization": f"Bearer {tokens[i]}"},
            timeout=120,
        )
        return response.status_code, response.json() if response.status_code == 200 else {}

    pids = workers_of(stack)
    at_rest = [rss_mb(pid) for pid in pids]
    peak = {pid: 0.0 for pid in pids}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            for pid in pids:
                peak[pid] = max(peak[pid], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    changer = threading.Thread(target=change_scope_midway, args=(stack,))
    calls_before = upstream_calls_made(urls)
    tokens_before = vault_tokens(stack)
    began = time.time()
    changer.start()
    outcome = measured(stack, lambda: storm(call), store_url)
    changer.join()
    sampling.set()
    sampler.join()
    calls_after = upstream_calls_made(urls)
    return BrokerResult(
        outcome=outcome,
        duplicates=duplicates(outcome),
        crossed=crossed(stack, outcome, label),
        rss_rest_mb=statistics.mean(at_rest),
        rss_peak_mb=statistics.mean(peak.values()),
        workers=len(pids),
        reloads=reloads(store_url, began),
        calls={b: calls_after.get(b, 0) - calls_before.get(b, 0) for b in ("aws", "vault")},
        vault_created=vault_tokens(stack) - tokens_before,
    )


def change_scope_midway(stack: BenchStack) -> None:
    time.sleep(0.5 + WINDOW_SECONDS / 2)
    scope = next((stack.directory / "scopes").glob("*.yaml"))
    text = scope.read_text()
    swapped = ("ttl: 15m", "ttl: 16m") if "ttl: 15m" in text else ("ttl: 16m", "ttl: 15m")
    scope.write_text(text.replace(*swapped))


def duplicates(outcome: Outcome) -> int:
    keys = [
        r["credentials"].get("access_key_id") or r["credentials"].get("accessor")
        for _, code, _, r in outcome.answers
        if code == 200
    ]
    return len(keys) - len(set(keys))


def crossed(stack: BenchStack, outcome: Outcome, label: str) -> int:
    """Credentials whose own record names another agent than the one that asked."""
    wrong = 0
    vault = hvac.Client(url=stack.bao.url, token=stack.bao.root_token)
    for i, code, _, body in outcome.answers:
        if code != 200:
            continue
        agent = f"agent:{AGENT_PREFIX}{label}-{i}"
        credentials = body["credentials"]
        if "source_identity" in credentials:
            if credentials["source_identity"] != source_identity(agent):
                wrong += 1
        elif i % 10 == 1:  # Vault: check a sample against the token's own metadata
            meta = vault.auth.token.lookup_accessor(credentials["accessor"])["data"]["meta"]
            if meta["agent"] != agent:
                wrong += 1
    return wrong


def fresh_database() -> str:
    name = f"broker_burst_{int(time.time())}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


def timing(outcome: Outcome) -> str:
    latencies = outcome.latencies or [float("inf")]
    return (
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 "
        f"{latencies[int(0.99 * (len(latencies) - 1))] * 1000:.0f} ms, last agent served "
        f"after {outcome.last_served_s:.2f} s"
    )


def cpu_line(outcome: Outcome) -> str:
    """CPU seconds per party during the storm, and per agent."""
    used = outcome.cpu_seconds
    parts = ", ".join(
        f"{name} {seconds:.1f} s ({seconds / AGENTS * 1000:.2f} ms/agent)"
        for name, seconds in used.items()
        if seconds > 0
    )
    return f"    CPU used during the storm: {parts}; total {sum(used.values()):.1f} s"


def report(label: str, r: BrokerResult, floor: Outcome) -> list[str]:
    served = len(r.outcome.answers) - len(r.outcome.failures)
    verdict = "all served" if served == AGENTS else f"{len(r.outcome.failures)} FAILED"
    ratio = r.outcome.last_served_s / floor.last_served_s
    calls = sum(r.calls.values())
    return [
        f"  {label}: {verdict}, 0 errors" if served == AGENTS else f"  {label}: {verdict}",
        f"    {timing(r.outcome)} ({ratio:.2f} x direct: "
        + ("meets" if ratio <= TARGET_RATIO else "MISSES")
        + f" <= {TARGET_RATIO}); duplicates {r.duplicates}, crossed {r.crossed}",
        f"    upstream calls: {calls} for {AGENTS} agents (aws {r.calls.get('aws', 0)}, vault "
        f"{r.calls.get('vault', 0)}; Vault itself created {r.vault_created} tokens)",
        cpu_line(r.outcome),
        f"    {r.workers} workers: RSS {r.rss_rest_mb:.0f} MB at rest, {r.rss_peak_mb:.0f} MB at "
        f"peak (mean per worker); the scope change was reloaded by {r.reloads} worker(s) "
        "during the storm",
    ]


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    print(
        f"session-start storm: {AGENTS:,} agents within {WINDOW_SECONDS:.0f} s (half AWS, half "
        f"Vault) from {CLIENT_THREADS} client threads, the scope file changed midway; "
        f"replicas of {REPLICA_WORKERS} worker(s) x {REPLICA_THREADS} threads; load "
        f"average before: {load()}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="broker-burst-") as tmp,
        bench_stack(Path(tmp), threads=8) as stack,
    ):
        floor = direct(stack)
        floor_ok = len(floor.failures) == 0
        print(
            f"  direct upstream calls: {AGENTS - len(floor.failures)} of {AGENTS} answered; "
            f"{timing(floor)}\n{cpu_line(floor)}",
            flush=True,
        )
        database = fresh_database()
        try:
            store = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            store = f"{store}/{database}"
            urls = [stack.start_broker(REPLICA_WORKERS, store, REPLICA_THREADS) for _ in range(2)]
            two = through_brokers(stack, urls, "two", store)
            print("\n".join(report("2 replicas, PostgreSQL", two, floor)), flush=True)
            for process in stack.brokers:
                process.stop()
            stack.brokers.clear()
        finally:
            drop_database(database)
        url = stack.start_broker(workers=2)
        sqlite = f"sqlite:///{(stack.directory / 'state' / 'broker.db').resolve()}"
        one = through_brokers(stack, [url], "one", sqlite)
        print("\n".join(report("1 replica, SQLite", one, floor)), flush=True)
    print(f"  load average after: {load()}")
    served = len(two.outcome.answers) - len(two.outcome.failures)
    errors = len(two.outcome.failures) + (0 if floor_ok else len(floor.failures))
    print(
        f"burst: {served} of {AGENTS} agents served by 2 replicas in "
        f"{two.outcome.last_served_s:.2f} s ({two.outcome.last_served_s / floor.last_served_s:.2f}"
        f" x direct {floor.last_served_s:.2f} s), {errors} errors, {two.crossed} crossed, "
        f"{sum(two.calls.values())} upstream calls"
    )


if __name__ == "__main__":
    main()
