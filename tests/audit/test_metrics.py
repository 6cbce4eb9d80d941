"""/metrics, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from broker.errors import StoreUnavailable
from broker.metrics import Metrics
from broker.store.sql import SqlStore
from tests.audit.helpers import scopes_without_freezes
from tests.fixtures.broker import READ_PAYMENTS, Broker, make_broker

WRITE_PAYMENTS = {
    **READ_PAYMENTS,
    "tier": "write",
    "resources": ["arn:aws:s3:::payments-prod-invoices/2024/a.pdf"],
    "justification": "fix an invoice",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(broker: Broker) -> Samples:
    response = broker.client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_issuance_cache_denials_and_upstream_latency(tmp_path: Path) -> None:
    broker = make_broker(tmp_path)
    broker.post("/v1/credentials", READ_PAYMENTS)  # miss: issued upstream
    broker.post("/v1/credentials", READ_PAYMENTS)  # hit
    broker.post("/v1/credentials", READ_PAYMENTS)  # hit
    broker.client.post("/v1/credentials", json=READ_PAYMENTS)  # no token
    broker.issuers["vault"].down = True
    ledger = {"service": "ledger", "environment": "prod", "tier": "read", "backend": "vault"}
    assert broker.post("/v1/credentials", ledger, agent="ledger-maintainer").status_code == 503
    samples = scrape(broker)
    issued = "broker_credentials_issued_total"
    assert value(samples, issued, backend="aws", tier="read", source="upstream") == 1
    assert value(samples, issued, backend="aws", tier="read", source="cache") == 2
    lookups = "broker_credential_cache_lookups_total"
    assert value(samples, lookups, result="hit") == 2
    assert value(samples, lookups, result="miss") == 2  # the aws miss and the vault one
    assert value(samples, "broker_denials_total", reason="unauthenticated") == 1
    latency = "broker_upstream_latency_seconds_count"
    assert value(samples, latency, backend="aws", outcome="ok") == 1
    assert value(samples, latency, backend="vault", outcome="error") == 1
    http = "broker_http_request_seconds_count"
    assert value(samples, http, endpoint="/v1/credentials", status="200") == 3
    assert value(samples, http, endpoint="/v1/credentials", status="401") == 1
    broker.services.close()


def test_pending_approvals_are_counted_in_the_shared_store(tmp_path: Path) -> None:
    """Two replicas on one store report the same number, whichever opened the requests."""
    scopes_without_freezes(tmp_path)
    store = SqlStore.from_url(f"sqlite:///{tmp_path / 'shared.db'}")
    first = make_broker(tmp_path, store=store)
    second = make_broker(tmp_path, store=SqlStore.from_url(f"sqlite:///{tmp_path / 'shared.db'}"))
    assert value(scrape(first), "broker_pending_approvals") == 0
    opened = first.post("/v1/credentials", WRITE_PAYMENTS).json["request_id"]
    other = {**WRITE_PAYMENTS, "resources": ["arn:aws:s3:::payments-prod-invoices/2024/b.pdf"]}
    assert second.post("/v1/credentials", other).status_code == 202
    assert value(scrape(first), "broker_pending_approvals") == 2
    assert value(scrape(second), "broker_pending_approvals") == 2
    second.clock.now = first.clock.now + 42
    second.services.approvals.decide(opened, "alice", "approve", "page")
    for replica in (first, second):
        assert value(scrape(replica), "broker_pending_approvals") == 1
    samples = scrape(second)
    assert value(samples, "broker_approval_decisions_total", decision="approve") == 1
    assert value(samples, "broker_approval_latency_seconds_count") == 1
    assert value(samples, "broker_approval_latency_seconds_sum") == 42
    first.services.close()
    second.services.close()


def test_a_store_outage_drops_only_the_pending_gauge() -> None:
    metrics = Metrics()
    metrics.revocation("aws", "revoked")

    def unavailable() -> int:
        raise StoreUnavailable("the broker's store is unavailable (OperationalError)")

    samples = parse(metrics.render(pending=unavailable).decode())
    assert value(samples, "broker_revocations_total", backend="aws", outcome="revoked") == 1
    assert not any(name == "broker_pending_approvals" for name, _ in samples)
    assert value(parse(metrics.render(pending=lambda: 7).decode()), "broker_pending_approvals") == 7


def test_endpoint_labels_are_url_rules_never_raw_paths(tmp_path: Path) -> None:
    scopes_without_freezes(tmp_path)
    broker = make_broker(tmp_path)
    request_id = broker.post("/v1/credentials", WRITE_PAYMENTS).json["request_id"]
    broker.client.get(f"/v1/requests/{request_id}", headers=broker.headers())
    broker.client.get("/no/such/page/with-a-token-abcdef")
    endpoints = {dict(labels).get("endpoint") for _, labels in scrape(broker)}
    assert "/v1/requests/<request_id>" in endpoints and "unmatched" in endpoints
    assert not any(request_id in str(e) or "abcdef" in str(e) for e in endpoints)
    broker.services.close()


MULTIPROCESS = """
from broker.metrics import Metrics
metrics = Metrics()
metrics.issued.labels(backend="aws", tier="read", source="upstream").inc(3)
print(metrics.render(pending=lambda: 5).decode())
"""


def test_worker_processes_are_aggregated_and_pending_still_comes_from_the_store(
    tmp_path: Path,
) -> None:
    """Under gunicorn (PROMETHEUS_MULTIPROC_DIR) each worker's samples are summed."""
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two workers, one after the other, sharing the directory
        done = subprocess.run(
            [sys.executable, "-c", MULTIPROCESS],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    samples = parse(done.stdout)
    issued = "broker_credentials_issued_total"
    assert value(samples, issued, backend="aws", tier="read", source="upstream") == 6
    assert value(samples, "broker_pending_approvals") == 5


def test_a_metrics_token_keeps_metrics_from_whoever_else_reaches_the_port(
    tmp_path: Path,
) -> None:
    token = "scrape-3f1b8e0c9d2a"
    broker = make_broker(tmp_path, metrics_token=token)
    try:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, broker.headers()):
            refused = broker.client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers  # an agent's own token is no key
            assert refused.json["error"] == "unauthenticated"
            assert token not in refused.get_data(as_text=True)
        allowed = broker.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert allowed.status_code == 200
        assert "broker_http_request_seconds" in allowed.get_data(as_text=True)
    finally:
        broker.services.close()
