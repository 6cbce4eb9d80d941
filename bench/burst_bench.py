"""Session-start burst: 500 distinct agents ask for read credentials within one second.

Against moto (STS, with IAM enforcement) and OpenBao (tokens), half the agents asking for
AWS and half for Vault, spread evenly over one second by 64 client threads. Checked: every
agent is served, no credential is handed to two agents (duplicates) and none to the wrong
agent (crossed: the STS session's SourceIdentity and the Vault token's metadata name the
agent that asked). Reported: p50/p99 latency from each agent's start, the time until the
last agent is served, and memory per gunicorn worker at rest and under load. Midway through,
the scope file changes and is reloaded by the running brokers: no request may fail.

Run for one replica (SQLite, the embedded default) and two replicas sharing PostgreSQL.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import hvac
import psycopg
import requests

from bench.stack import AGENT_PREFIX, POSTGRES, SERVICE, BenchStack, bench_stack
from broker.store.sql import SqlStore

AGENTS = 500
CLIENT_THREADS = 64
WINDOW_SECONDS = 1.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def workers_of(stack: BenchStack) -> list[int]:
    pids: list[int] = []
    for broker in stack.brokers:
        assert broker.process is not None
        out = subprocess.run(
            ["pgrep", "-P", str(broker.process.pid)], capture_output=True, text=True
        ).stdout.split()
        pids.extend(int(p) for p in out)
    return pids


def reloads(store_url: str) -> int:
    """Scope reloads the replicas recorded (each worker reloads on its own)."""
    store = SqlStore.from_url(store_url, migrate=False)
    try:
        return sum(1 for r in store.audit_records() if r.action == "scope_reload")
    finally:
        store.close()


def burst(stack: BenchStack, urls: list[str], label: str, store_url: str) -> dict[str, Any]:
    tokens = [stack.token(f"{AGENT_PREFIX}{label}-{i}", 3600) for i in range(AGENTS)]
    sessions = threading.local()
    results: list[tuple[int, int, float, dict[str, Any]]] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def ask(i: int) -> None:
        backend = "aws" if i % 2 == 0 else "vault"
        body: dict[str, Any] = {
            "service": SERVICE,
            "environment": "prod",
            "tier": "read",
            "backend": backend,
        }
        if backend == "aws":
            body["region"] = "us-east-1"
        scheduled = start + i * WINDOW_SECONDS / AGENTS
        time.sleep(max(0.0, scheduled - time.perf_counter()))
        if not hasattr(sessions, "client"):
            sessions.client = requests.Session()
        response = sessions.client.post(
            f"{urls[i % len(urls)]}/v1/credentials",
            json=body,
            headers={"Authorization": f"Bearer {tokens[i]}"},
            timeout=60,
        )
        elapsed = time.perf_counter() - scheduled
        with lock:
            results.append(
                (
                    i,
                    response.status_code,
                    elapsed,
                    response.json() if response.status_code == 200 else {},
                )
            )

    pids = workers_of(stack)
    at_rest = [rss_mb(pid) for pid in pids]
    peak = {pid: 0.0 for pid in pids}
    sampling = True

    def sample() -> None:
        while sampling:
            for pid in pids:
                peak[pid] = max(peak[pid], rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    reload_at = start + WINDOW_SECONDS / 2

    def change_scope() -> None:
        time.sleep(max(0.0, reload_at - time.perf_counter()))
        scope = next((stack.directory / "scopes").glob("*.yaml"))
        text = scope.read_text()
        swapped = ("ttl: 15m", "ttl: 16m") if "ttl: 15m" in text else ("ttl: 16m", "ttl: 15m")
        scope.write_text(text.replace(*swapped))

    changer = threading.Thread(target=change_scope)
    changer.start()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(ask, range(AGENTS)))
    changer.join()
    sampling = False
    sampler.join()
    last_served = max(start + i * WINDOW_SECONDS / AGENTS + e for i, _, e, _ in results) - start
    failures = [(i, code) for i, code, _, _ in results if code != 200]
    latencies = sorted(e for _, code, e, _ in results if code == 200)
    return {
        "served": len(results) - len(failures),
        "failures": failures,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
        "last_served_s": last_served,
        "duplicates": duplicates(results),
        "crossed": crossed(stack, results, label),
        "rss_rest_mb": statistics.mean(at_rest),
        "rss_peak_mb": statistics.mean(peak.values()),
        "workers": len(pids),
        "reloads": reloads(store_url),
    }


def duplicates(results: list[tuple[int, int, float, dict[str, Any]]]) -> int:
    keys = [
        r["credentials"].get("access_key_id") or r["credentials"].get("accessor")
        for _, code, _, r in results
        if code == 200
    ]
    return len(keys) - len(set(keys))


def crossed(
    stack: BenchStack, results: list[tuple[int, int, float, dict[str, Any]]], label: str
) -> int:
    """Credentials whose own record names another agent than the one that asked."""
    wrong = 0
    vault = hvac.Client(url=stack.bao.url, token=stack.bao.root_token)
    for i, code, _, body in results:
        if code != 200:
            continue
        agent = f"agent:{AGENT_PREFIX}{label}-{i}"
        credentials = body["credentials"]
        if "source_identity" in credentials:
            if credentials["source_identity"] != agent.replace(":", "-"):
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


def report(label: str, r: dict[str, Any]) -> None:
    verdict = "all served" if r["served"] == AGENTS else f"{len(r['failures'])} FAILED"
    print(
        f"  {label}: {verdict}; p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, last "
        f"agent served after {r['last_served_s']:.2f} s; duplicates {r['duplicates']}, "
        f"crossed {r['crossed']}; {r['workers']} workers, RSS {r['rss_rest_mb']:.0f} MB at "
        f"rest, {r['rss_peak_mb']:.0f} MB under load (mean per worker); the scope change was "
        f"reloaded by {r['reloads']} worker(s) during the burst"
    )


def main() -> None:
    print(
        f"session-start burst: {AGENTS} agents within {WINDOW_SECONDS:.0f} s (half AWS, half "
        "Vault), the scope file changed midway:"
    )
    with (
        tempfile.TemporaryDirectory(prefix="broker-burst-") as tmp,
        bench_stack(Path(tmp), threads=8) as stack,
    ):
        url = stack.start_broker(workers=2)
        sqlite = f"sqlite:///{(stack.directory / 'state' / 'broker.db').resolve()}"
        report("1 replica, SQLite ", burst(stack, [url], "one", sqlite))
        for process in stack.brokers:
            process.stop()
        stack.brokers.clear()
        database = fresh_database()
        try:
            store = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            store = f"{store}/{database}"
            urls = [stack.start_broker(workers=2, store_url=store) for _ in range(2)]
            report("2 replicas, PostgreSQL", burst(stack, urls, "two", store))
            for process in stack.brokers:
                process.stop()
            stack.brokers.clear()
        finally:
            drop_database(database)


if __name__ == "__main__":
    sys.exit(main())
