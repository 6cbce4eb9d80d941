"""Uncached read issuance through the broker against calling the upstream directly.

For each backend, the same upstream call the broker makes (OpenBao token create, moto
AssumeRole with the compiled session policy and tags, Vault database credentials) is timed
directly and through `POST /v1/credentials` on a running `broker serve`, interleaved one by
one so both see the same machine state. Every broker call comes from a different agent, so
none is served from the cache. Targets: the broker adds at most 50 % for Vault tokens and
at most 20 % for STS.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench.stack import AGENT_PREFIX, SERVICE, BenchStack, bench_stack
from broker.issuers.aws_sts import session_name, source_identity
from broker.policy.compiler import dumps

ROUNDS = 300
WARMUP = 20
TARGETS = {"vault": 0.50, "aws": 0.20, "database": None}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def direct_calls(stack: BenchStack) -> dict[str, Callable[[int], Any]]:
    vault = stack.bao.client()
    sts = stack.moto.client("sts")
    compiled = stack.scope_set.compiled[SERVICE]["prod"]["read"]
    policy = dumps(compiled["aws"]["session_policies"]["us-east-1"])
    role = compiled["aws"]["role_arn"]

    def token(i: int) -> Any:
        return vault.auth.token.create_orphan(
            policies=["broker-bench-prod-read"],
            no_default_policy=True,
            ttl="900s",
            explicit_max_ttl="900s",
            renewable=True,
            num_uses=0,
            display_name="broker-bench-read",
            meta={
                "agent": f"agent:{AGENT_PREFIX}{i}",
                "service": SERVICE,
                "environment": "prod",
                "tier": "read",
                "request_id": f"req_direct{i}",
            },
        )

    def assume(i: int) -> Any:
        agent = f"agent:{AGENT_PREFIX}{i}"
        return sts.assume_role(
            RoleArn=role,
            RoleSessionName=session_name(agent, f"req_direct{i:010d}"),
            DurationSeconds=900,
            Policy=policy,
            SourceIdentity=source_identity(agent),
            Tags=[
                {"Key": "broker:service", "Value": SERVICE},
                {"Key": "broker:environment", "Value": "prod"},
                {"Key": "broker:tier", "Value": "read"},
                {"Key": "broker:request-id", "Value": f"req_direct{i}"},
                {"Key": "broker:agent", "Value": agent},
            ],
        )

    def database(_i: int) -> Any:
        return vault.secrets.database.generate_credentials(
            name="bench-prod-read", mount_point="database"
        )

    return {"vault": token, "aws": assume, "database": database}


def broker_call(stack: BenchStack, url: str, backend: str) -> Callable[[int], Any]:
    session = requests.Session()
    tokens: dict[int, str] = {}
    body: dict[str, Any] = {
        "service": SERVICE,
        "environment": "prod",
        "tier": "read",
        "backend": backend,
        "duration": 900,
    }
    if backend == "aws":
        body["region"] = "us-east-1"

    def prepare(count: int, offset: int) -> None:
        for i in range(offset, offset + count):
            tokens[i] = stack.token(f"{AGENT_PREFIX}{backend}-{i}")

    def call(i: int) -> Any:
        response = session.post(
            f"{url}/v1/credentials",
            json=body,
            headers={"Authorization": f"Bearer {tokens[i]}"},
            timeout=30,
        )
        if response.status_code != 200 or response.json().get("cached"):
            raise RuntimeError(f"broker answered {response.status_code}: {response.text[:200]}")
        return response

    call.prepare = prepare  # type: ignore[attr-defined]
    return call


def floor(url: str, rounds: int) -> float:
    """Median ms of GET /healthz: the HTTP hop and the framework, with no broker logic."""
    session = requests.Session()
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        session.get(f"{url}/healthz", timeout=10)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000


def measure(stack: BenchStack, url: str, rounds: int) -> dict[str, dict[str, float]]:
    direct = direct_calls(stack)
    results: dict[str, dict[str, float]] = {"http": {"floor_p50": floor(url, rounds)}}
    for backend, direct_call in direct.items():
        through = broker_call(stack, url, backend)
        through.prepare(rounds + WARMUP, 0)  # type: ignore[attr-defined]
        timings: dict[str, list[float]] = {"direct": [], "broker": []}
        for i in range(rounds + WARMUP):
            for kind, call in (("direct", direct_call), ("broker", through)):
                start = time.perf_counter()
                call(i)
                elapsed = time.perf_counter() - start
                if i >= WARMUP:
                    timings[kind].append(elapsed)
        results[backend] = {
            "direct_p50": statistics.median(timings["direct"]) * 1000,
            "direct_p99": percentile(timings["direct"], 0.99) * 1000,
            "broker_p50": statistics.median(timings["broker"]) * 1000,
            "broker_p99": percentile(timings["broker"], 0.99) * 1000,
        }
    return results


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else ROUNDS
    with (
        tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp,
        bench_stack(Path(tmp)) as stack,
    ):
        url = stack.start_broker(workers=1)
        results = measure(stack, url, rounds)
    http = results.pop("http")
    print(f"uncached read issuance, {rounds} interleaved calls each (ms):")
    print(
        f"  {'backend':9} {'direct p50':>10} {'broker p50':>10} {'added':>7} "
        f"{'direct p99':>10} {'broker p99':>10}  target"
    )
    for backend, r in results.items():
        added = r["broker_p50"] / r["direct_p50"] - 1
        target = TARGETS[backend]
        verdict = (
            "-"
            if target is None
            else ("meets" if added <= target else "MISSES") + f" <= {target:.0%}"
        )
        print(
            f"  {backend:9} {r['direct_p50']:10.2f} {r['broker_p50']:10.2f} {added:7.0%} "
            f"{r['direct_p99']:10.2f} {r['broker_p99']:10.2f}  {verdict}"
        )
    print(
        f"  the HTTP hop alone (GET /healthz through gunicorn and Flask): "
        f"{http['floor_p50']:.2f} ms p50"
    )


if __name__ == "__main__":
    main()
