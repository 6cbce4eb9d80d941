"""Helpers the adversarial tests share: a broker that keeps answering, and answer checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker.config import BreakerSettings
from tests.fixtures.broker import Broker, FakeIssuer, make_broker

ADMIN = "ops"
# The circuit breaker freezes an agent after a few denials; the fuzzers send thousands on
# purpose and must keep reaching the code behind it (tests of the breaker live elsewhere).
PATIENT_BREAKER = BreakerSettings(
    max_denials=10**9, max_destructive_requests=10**9, max_out_of_scope=10**9
)


def patient_broker(tmp_path: Path, **changes: Any) -> Broker:
    """A broker on SQLite with fake issuers, an admin (agent:ops) and a patient breaker."""
    return make_broker(tmp_path, breaker=PATIENT_BREAKER, admins=(f"agent:{ADMIN}",), **changes)


def issuer_calls(broker: Broker) -> int:
    """How many credentials the fake issuers have handed out, all backends together."""
    total = 0
    for issuer in broker.issuers.values():
        assert isinstance(issuer, FakeIssuer)
        total += len(issuer.calls)
    return total


def assert_clean_error(response: Any, status: int | tuple[int, ...]) -> dict[str, Any]:
    """A JSON error of the expected status in the one error shape, without internals."""
    expected = (status,) if isinstance(status, int) else status
    text = response.get_data(as_text=True)
    assert response.status_code in expected, (response.status_code, text[:300])
    assert response.mimetype == "application/json", (response.mimetype, text[:300])
    body: dict[str, Any] = response.get_json()
    assert set(body) >= {"error", "message", "request_id"}, body
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "\n" not in body["message"] and len(body["message"]) < 500, body["message"]
    for internal in ("Traceback", 'File "', "site-packages", "broker/", "Error:"):
        assert internal not in text, text[:500]
    return body
