"""Upstream faults between the broker and STS (moto) or Vault (OpenBao), injected by a proxy.

Transient faults are retried with backoff until the call succeeds; a persistent fault is a
503 ``upstream_unavailable`` naming the backend, within the deadline, with nothing issued
or recorded; repeated failures open that upstream's circuit (and ``/readyz`` says so, for
that backend only); once the upstream heals the broker recovers by itself through a
half-open trial. A mangled answer (a partial or broader credential) is never handed out.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from typing import Any

import pytest
from hvac import exceptions as vault_errors

from broker.services import READINESS_CACHE_SECONDS
from tests.faults.conftest import (
    COOLDOWN,
    DEADLINE,
    RETRY,
    THRESHOLD,
    VAULT_TIMEOUT,
    FaultyBroker,
)
from tests.fixtures.faults import Fault, FaultProxy, vault_error
from tests.fixtures.secret_scan import Watcher

# What the broker's issuance looks like on the wire, for each backend.
ISSUE_CALL = {"aws": "Action=AssumeRole", "vault": "/v1/auth/token/create"}
ANSWER_BOUND = DEADLINE + 0.5  # each attempt ends by the deadline; the rest is scheduling


def proxy_of(faulty: FaultyBroker, backend: str) -> FaultProxy:
    return faulty.sts if backend == "aws" else faulty.vault


def ask(faulty: FaultyBroker, backend: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = faulty.broker.post("/v1/credentials", faulty.body(backend), agent="shop-bot")
    return response.status_code, response.json, time.monotonic() - started


def nothing_issued(faulty: FaultyBroker) -> None:
    """Nothing recorded as issued, nothing audited as issued. What remains is the
    write-ahead of the attempt (state minting): the reconciler's, since an upstream that
    failed to answer may still have minted."""
    store = faulty.broker.services.store
    assert [r for r in store.active_issued(time.time()) if r.state != "minting"] == []
    outcomes = [(r.action, r.outcome) for r in store.audit_records()]
    assert ("issue", "issued") not in outcomes


# (backend, fault, attempts the proxy sees): each faulted attempt is followed by another.
TRANSIENT = [
    ("aws", Fault("reset", times=2), 3),
    ("aws", Fault("status", times=2, status=503, body=b"<html>503</html>"), 3),
    ("aws", Fault("status", times=2, status=500), 3),
    ("aws", Fault("throttle", times=3), 4),
    ("aws", Fault("latency", times=1, seconds=0.5), 1),  # slower, within the timeout
    ("vault", Fault("reset", times=2), 3),
    ("vault", replace(vault_error(503, "Vault is sealed"), times=2), 3),
    ("vault", replace(vault_error(500, "internal error"), times=2), 3),
    ("vault", replace(vault_error(429, "rate limit quota exceeded"), times=2), 3),
    ("vault", Fault("latency", times=1, seconds=VAULT_TIMEOUT + 1), 2),  # one call times out
]


@pytest.mark.parametrize(
    ("backend", "fault", "attempts"),
    [pytest.param(*case, id=f"{case[0]}-{case[1].kind}-{case[1].status}") for case in TRANSIENT],
)
def test_transient_faults_are_retried_until_the_call_succeeds(
    faulty: FaultyBroker, backend: str, fault: Fault, attempts: int
) -> None:
    proxy = proxy_of(faulty, backend)
    fault = proxy.inject(replace(fault, match=ISSUE_CALL[backend], applied=0))
    status, body, _ = ask(faulty, backend)
    assert status == 200, body
    assert body["credentials"]
    assert fault.applied == fault.times
    assert proxy.attempts(ISSUE_CALL[backend]) == attempts
    assert faulty.circuits[backend].state == "closed"


def test_sts_throttling_is_retried_with_backoff(faulty: FaultyBroker) -> None:
    """STS's real Throttling error (HTTP 400, XML) is retried, not taken as a refusal."""
    throttled = faulty.sts.inject(Fault("throttle", times=4, match=ISSUE_CALL["aws"]))
    status, body, _ = ask(faulty, "aws")
    assert status == 200, body
    outcomes = [s.outcome for s in faulty.sts.seen(ISSUE_CALL["aws"])]
    assert outcomes == ["throttle"] * 4 + ["relayed"]
    assert throttled.applied == 4


PERSISTENT = [
    pytest.param("aws", Fault("reset"), id="aws-reset"),
    pytest.param("aws", Fault("status", status=503), id="aws-503"),
    pytest.param("aws", Fault("throttle"), id="aws-throttling"),
    pytest.param("aws", Fault("latency", seconds=DEADLINE + 3), id="aws-latency"),
    pytest.param("vault", Fault("reset"), id="vault-reset"),
    pytest.param("vault", vault_error(502, "bad gateway"), id="vault-502"),
    pytest.param("vault", Fault("latency", seconds=DEADLINE + 3), id="vault-latency"),
]


@pytest.mark.parametrize(("backend", "fault"), PERSISTENT)
def test_a_persistent_fault_is_a_503_within_the_deadline_and_nothing_is_issued(
    faulty: FaultyBroker, backend: str, fault: Fault
) -> None:
    proxy = proxy_of(faulty, backend)
    fault = proxy.inject(replace(fault, match=ISSUE_CALL[backend], times=None, applied=0))
    status, body, elapsed = ask(faulty, backend)
    assert status == 503, body
    assert (body["error"], body["backend"]) == ("upstream_unavailable", backend)
    assert "credentials" not in body
    assert elapsed < ANSWER_BOUND
    attempts = proxy.attempts(ISSUE_CALL[backend])
    if fault.kind == "latency":  # STS's read timeout is the deadline; Vault's is half of it
        assert attempts in ((1,) if backend == "aws" else (1, 2))
    else:  # retried before giving up, never more often than the policy allows
        assert 2 <= attempts <= RETRY.max_attempts
    nothing_issued(faulty)
    failed = [r for r in faulty.broker.services.store.audit_records() if r.action == "issue"]
    assert [(r.outcome, r.details.get("backend")) for r in failed] == [("failed", backend)]


# (backend, slow failures before the upstream hangs, seconds each): the last attempt
# starts well before the deadline, yet too late for a whole timeout of its own (Vault's is
# VAULT_TIMEOUT, STS's read timeout is the deadline itself).
LATE_RETRY = [
    pytest.param("aws", 1, 1.5, id="aws"),
    pytest.param("vault", 2, 0.7, id="vault"),
]


@pytest.mark.parametrize(("backend", "slow_failures", "seconds"), LATE_RETRY)
def test_a_retry_started_late_ends_by_the_deadline(
    faulty: FaultyBroker, backend: str, slow_failures: int, seconds: float
) -> None:
    """Each attempt's socket timeout is cut to the time the deadline still allows: the
    503 comes at the deadline, not a whole timeout after the last attempt began."""
    proxy = proxy_of(faulty, backend)
    error = vault_error(503, "sealed") if backend == "vault" else Fault("status", status=503)
    proxy.inject(replace(error, times=slow_failures, seconds=seconds, match=ISSUE_CALL[backend]))
    proxy.inject(Fault("latency", seconds=DEADLINE + 3, match=ISSUE_CALL[backend]))
    status, body, elapsed = ask(faulty, backend)
    assert status == 503, body
    assert (body["error"], body["backend"]) == ("upstream_unavailable", backend)
    assert proxy.attempts(ISSUE_CALL[backend]) == slow_failures + 1
    # Without the cut the hung attempt would run past the deadline by 0.5 s (Vault) or
    # 1.5 s (STS); the margin here is for a slow machine's scheduling, not for that.
    assert DEADLINE - 0.3 < elapsed < DEADLINE + 0.3
    nothing_issued(faulty)


def test_each_attempt_is_one_call_to_sts(faulty: FaultyBroker) -> None:
    """Regression: botocore retried each attempt once more behind the broker's back
    (``max_attempts`` counts retries, not calls), doubling the calls and the time a
    timed-out attempt takes. The attempts the broker reports are the calls STS saw."""
    faulty.sts.inject(Fault("reset", match=ISSUE_CALL["aws"]))
    status, body, _ = ask(faulty, "aws")
    assert status == 503, body
    reported = re.search(r"after (\d+) attempt", body["message"])
    assert reported, body["message"]
    assert faulty.sts.attempts(ISSUE_CALL["aws"]) == int(reported.group(1)) >= 2


@pytest.mark.parametrize("backend", ["aws", "vault"])
def test_the_circuit_opens_for_that_backend_only_and_recovers_by_itself(
    faulty: FaultyBroker, backend: str
) -> None:
    other = "vault" if backend == "aws" else "aws"
    proxy = proxy_of(faulty, backend)
    circuit = faulty.circuits[backend]
    proxy.inject(Fault("status", status=503, match=ISSUE_CALL[backend]))
    for _ in range(THRESHOLD):
        assert ask(faulty, backend)[0] == 503
    assert circuit.state == "open"

    # Open: refused at once, without calling the sick upstream.
    attempts = proxy.attempts()
    status, body, _ = ask(faulty, backend)
    assert status == 503 and body["backend"] == backend
    assert "circuit is open" in body["message"]
    assert proxy.attempts() == attempts
    # The other upstream is unaffected.
    assert ask(faulty, other)[0] == 200

    ready = faulty.broker.client.get("/readyz")
    assert ready.status_code == 503
    checks: dict[str, str] = ready.get_json()["checks"]
    assert "circuit open" in checks[backend]
    assert {k: v for k, v in checks.items() if k != backend} == {
        "scopes": "ok",
        "store": "ok",
        other: "ok",
    }

    # Healed, but still inside the cooldown: the circuit keeps the broker off it.
    proxy.heal()
    assert ask(faulty, backend)[0] == 503
    assert proxy.attempts() == attempts

    # After the cooldown a failing trial opens the circuit again...
    proxy.inject(Fault("status", status=503, match=ISSUE_CALL[backend]))
    faulty.clock.advance(COOLDOWN)
    assert circuit.state == "half-open"
    assert ask(faulty, backend)[0] == 503
    assert circuit.state == "open"
    assert proxy.attempts() > attempts

    # ...and once the upstream is well, the next trial closes it: no restart needed.
    proxy.heal()
    faulty.clock.advance(COOLDOWN)
    status, body, _ = ask(faulty, backend)
    assert status == 200, body
    assert circuit.state == "closed"
    time.sleep(READINESS_CACHE_SECONDS)  # let /readyz ask again rather than answer its cache
    ready = faulty.broker.client.get("/readyz")
    assert ready.status_code == 200, ready.json


def _without_session_token(body: bytes) -> bytes:
    return re.sub(rb"<SessionToken>[^<]*</SessionToken>", b"", body)


def test_a_partial_sts_answer_is_never_handed_out(faulty: FaultyBroker) -> None:
    faulty.sts.inject(Fault("rewrite", match=ISSUE_CALL["aws"], rewrite=_without_session_token))
    status, body, _ = ask(faulty, "aws")
    assert status == 503, body
    assert body["backend"] == "aws" and "incomplete" in body["message"]
    assert "credentials" not in body
    nothing_issued(faulty)


def test_a_vault_token_with_more_policies_is_revoked_not_handed_out(
    faulty: FaultyBroker, secret_scan: Watcher
) -> None:
    """Vault's answer claims an extra policy: the broker refuses the token and revokes it."""
    accessors: list[str] = []

    def broaden(body: bytes) -> bytes:
        answer = json.loads(body)
        secret_scan.add_secret(answer["auth"]["client_token"], "a token broadened in transit")
        accessors.append(answer["auth"]["accessor"])
        answer["auth"]["policies"] = [*answer["auth"]["policies"], "root"]
        return json.dumps(answer).encode()

    faulty.vault.inject(Fault("rewrite", times=1, match=ISSUE_CALL["vault"], rewrite=broaden))
    status, body, _ = ask(faulty, "vault")
    assert status == 503, body
    assert body["backend"] == "vault" and "unexpected policies" in body["message"]
    assert "credentials" not in body
    nothing_issued(faulty)
    [accessor] = accessors
    with pytest.raises(vault_errors.InvalidRequest):  # revoked: Vault no longer knows it
        faulty.bao.client().auth.token.lookup_accessor(accessor)


# A middlebox's page where the upstream's answer should be (a captive portal, a proxy).
UNUSABLE = Fault(
    "status",
    status=200,
    body=b"<html><body>Please sign in to the network</body></html>",
    content_type="text/html",
)


@pytest.mark.parametrize("backend", ["aws", "vault"])
def test_an_unusable_answer_is_a_503_naming_the_backend(faulty: FaultyBroker, backend: str) -> None:
    """Regression: a 200 that is not the upstream's format was a 500 internal_error
    (botocore's parser raised KeyError; hvac handed back the raw HTTP response)."""
    proxy_of(faulty, backend).inject(replace(UNUSABLE, match=ISSUE_CALL[backend]))
    status, body, _ = ask(faulty, backend)
    assert status == 503, body
    assert (body["error"], body["backend"]) == ("upstream_unavailable", backend)
    assert "unusable answer" in body["message"] and "credentials" not in body
    nothing_issued(faulty)
    outcomes = [(r.action, r.outcome) for r in faulty.broker.services.store.audit_records()]
    assert ("issue", "failed") in outcomes


def test_an_unusable_answer_to_the_half_open_trial_does_not_wedge_the_circuit(
    faulty: FaultyBroker,
) -> None:
    """Regression: an exception other than the issuer's own escaped the circuit during
    the half-open trial, which then stayed "running": every later call was refused as
    "circuit open" until the broker was restarted."""
    circuit = faulty.circuits["aws"]
    faulty.sts.inject(Fault("status", status=503, match=ISSUE_CALL["aws"]))
    for _ in range(THRESHOLD):
        assert ask(faulty, "aws")[0] == 503
    assert circuit.state == "open"
    faulty.sts.heal()
    faulty.sts.inject(replace(UNUSABLE, match=ISSUE_CALL["aws"], times=1))
    faulty.clock.advance(COOLDOWN)
    status, body, _ = ask(faulty, "aws")
    assert status == 503 and "unusable answer" in body["message"], body
    assert circuit.state == "open"  # the failed trial reopened it
    faulty.clock.advance(COOLDOWN)
    status, body, _ = ask(faulty, "aws")
    assert status == 200, body
    assert circuit.state == "closed"
