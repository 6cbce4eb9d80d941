"""Prometheus metrics: what was issued, cache hit ratio, approvals, denials, upstream latency.

Each app gets its own registry (tests build many apps in one process). Under gunicorn with
several workers, ``PROMETHEUS_MULTIPROC_DIR`` makes every worker write its samples to files
that /metrics aggregates (prometheus_client's multiprocess mode).

Counters and histograms count what this process did. The pending-approvals gauge is
different: it is a fact of the shared store, so it is read from the store at scrape time
(every replica reports the same number) instead of being counted up and down per process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.errors import BrokerError

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PENDING_NAME = "broker_pending_approvals"


class PendingApprovals:
    """``broker_pending_approvals``: the store's count of pending requests, at scrape time.

    When the store cannot be read the gauge is left out of that scrape (Prometheus then
    sees it absent) rather than failing the whole scrape or reporting a made-up zero.
    """

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count

    def collect(self) -> Iterator[Metric]:
        try:
            value = self.count()
        except BrokerError as e:
            log.warning("pending approvals not read for /metrics", extra={"error": e.code})
            return
        gauge = GaugeMetricFamily(PENDING_NAME, "Requests waiting for approval (all replicas)")
        gauge.add_metric([], value)
        yield gauge


class _Scrape:
    """Several collectors exposed as one, for one scrape."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()

        def counter(name: str, text: str, labels: list[str]) -> Counter:
            return Counter(name, text, labels, registry=self.registry)

        def latency(name: str, text: str, labels: list[str]) -> Histogram:
            return Histogram(name, text, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

        self.issued = counter(
            "broker_credentials_issued_total",
            "Credentials handed out, by backend, tier and source (upstream or cache)",
            ["backend", "tier", "source"],
        )
        self.cache_lookups = counter(
            "broker_credential_cache_lookups_total",
            "Credential cache lookups by result (hit or miss); hit ratio = hits / all",
            ["result"],
        )
        # Bound once: looking a label set up costs more than counting it, every request.
        self._cache_hits = self.cache_lookups.labels(result="hit")
        self._cache_misses = self.cache_lookups.labels(result="miss")
        self.denials = counter("broker_denials_total", "Refused requests by reason", ["reason"])
        self.approvals = counter(
            "broker_approval_decisions_total", "Approval decisions by outcome", ["decision"]
        )
        self.approval_latency = Histogram(
            "broker_approval_latency_seconds",
            "From request to the last required approval",
            buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=self.registry,
        )
        self.upstream_latency = latency(
            "broker_upstream_latency_seconds",
            "Upstream call latency by backend and outcome",
            ["backend", "outcome"],
        )
        self.revocations = counter(
            "broker_revocations_total",
            "Credentials revoked by backend and outcome",
            ["backend", "outcome"],
        )
        self.requests = latency(
            "broker_http_request_seconds", "HTTP request latency", ["endpoint", "status"]
        )
        self._children: dict[tuple[object, ...], Any] = {}

    def labelled(self, metric: Counter | Histogram, *values: object) -> Any:
        """``metric.labels(*values)``, looked up once per label set: prometheus_client's
        lookup (a lock, a conversion of every value) costs more than counting, three times
        per request. The label values come from a fixed set (backends, tiers, routes,
        statuses), so the memo stays small."""
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*values))
        return child

    def denial(self, reason: str) -> None:
        self.denials.labels(reason=reason).inc()

    def cache_lookup(self, hit: bool) -> None:
        (self._cache_hits if hit else self._cache_misses).inc()

    def revocation(self, backend: str, outcome: str) -> None:
        self.revocations.labels(backend=backend, outcome=outcome).inc()

    @contextmanager
    def upstream(self, backend: str) -> Iterator[None]:
        start = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.labelled(self.upstream_latency, backend, outcome).observe(
                time.perf_counter() - start
            )

    def render(self, pending: Callable[[], int] | None = None) -> bytes:
        """The text exposition; ``pending`` counts pending requests in the shared store."""
        collectors: list[Collector] = []
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            workers = CollectorRegistry()
            multiprocess.MultiProcessCollector(workers)  # type: ignore[no-untyped-call]
            collectors.append(workers)
        else:
            collectors.append(self.registry)
        if pending is not None:
            collectors.append(PendingApprovals(pending))
        return generate_latest(_Scrape(collectors))
