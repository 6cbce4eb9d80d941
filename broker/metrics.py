"""Prometheus metrics: what was issued, cache hit ratio, approvals, denials, upstream latency.

Each app gets its own registry (tests build many apps in one process). Under gunicorn with
several workers, ``PROMETHEUS_MULTIPROC_DIR`` makes every worker write its samples to files
that /metrics aggregates (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.issued = Counter(
            "broker_credentials_issued_total",
            "Credentials handed out, by backend, tier and source (upstream or cache)",
            ["backend", "tier", "source"],
            registry=r,
        )
        self.denials = Counter(
            "broker_denials_total", "Refused requests by reason", ["reason"], registry=r
        )
        self.approvals = Counter(
            "broker_approval_decisions_total",
            "Approval decisions by outcome",
            ["decision"],
            registry=r,
        )
        self.approval_latency = Histogram(
            "broker_approval_latency_seconds",
            "From request to the last required approval",
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=r,
        )
        self.pending = Gauge(
            "broker_pending_approvals",
            "Requests waiting for approval",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.upstream_latency = Histogram(
            "broker_upstream_latency_seconds",
            "Upstream call latency by backend and outcome",
            ["backend", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.revocations = Counter(
            "broker_revocations_total",
            "Credentials revoked by backend and outcome",
            ["backend", "outcome"],
            registry=r,
        )
        self.requests = Histogram(
            "broker_http_request_seconds",
            "HTTP request latency",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def denial(self, reason: str) -> None:
        self.denials.labels(reason=reason).inc()

    @contextmanager
    def upstream(self, backend: str) -> Iterator[None]:
        start = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.upstream_latency.labels(backend=backend, outcome=outcome).observe(
                time.perf_counter() - start
            )

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
