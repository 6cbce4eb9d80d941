"""A scope broken on disk while served: not served at all until fixed (fail closed).

Its last good version may grant more than the fix will: its requests answer 409
``scope_invalid`` with file:line (the file by its name: no server directories reach callers;
the log, the audit, the approvers' alert and `broker scopes validate` keep the full path),
approvals under it are refused, ``/readyz`` lists it, the approvers are alerted once, and
the other scopes go on. A good reload is logged with what changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from broker.errors import Conflict
from tests.approvals.flows import WRITE_PAYMENTS, open_request
from tests.fixtures.broker import READ_PAYMENTS, Broker
from tests.fixtures.slack import DEFAULT_CHANNEL, FakeSlack, make_slack_broker

READ_LEDGER = {
    "service": "ledger",
    "environment": "prod",
    "tier": "read",
    "backend": "vault",
    "resources": ["ledger/prod/app"],
}


def _alerts(slack: FakeSlack) -> list[Any]:
    return [c for c in slack.api("chat.postMessage") if c.body["channel"] == DEFAULT_CHANNEL]


def _break(broker: Broker) -> Path:
    """payments.yaml, served until now, gains a typo on line 2 of its tiers."""
    path = broker.services.settings.scopes_dir / "payments.yaml"
    path.write_text(path.read_text().replace("  read:\n    ttl: 1h", "  read:\n    tll: 1h", 1))
    return path


def test_a_scope_broken_on_disk_is_not_served(
    tmp_path: Path, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    broker = make_slack_broker(tmp_path, fake_slack)
    try:
        assert broker.post("/v1/credentials", READ_PAYMENTS).status_code == 200
        pending = open_request(broker, WRITE_PAYMENTS)
        path = _break(broker)
        with caplog.at_level(logging.WARNING, logger="broker.scopes.holder"):
            outcome = broker.services.scopes.reload()
        assert not outcome.applied and outcome.invalid == {"payments"}
        # The log and the audit keep where the file is broken, line and all.
        problem = next(p for p in outcome.problems if "tll" in p.reason)
        assert problem.path == str(path)
        assert path.read_text().splitlines()[problem.line - 1].strip().startswith("tll")
        assert any(str(problem) in str(r.__dict__.get("problems")) for r in caplog.records)
        [reloaded] = [
            r for r in broker.services.store.audit_records() if r.action == "scope_reload"
        ][-1:]
        assert str(problem) in reloaded.details["problems"]

        refused = broker.post("/v1/credentials", READ_PAYMENTS)
        body = refused.get_json()
        assert refused.status_code == 409 and body["error"] == "scope_invalid"
        where = f"payments.yaml:{problem.line}:{problem.column}: {problem.reason}"
        assert where in body["problems"]
        assert body["message"].startswith("scope payments is invalid and not served until")
        assert body["message"].endswith(body["problems"][0])
        # The file by its name, line and column: nothing of the server's directories.
        assert str(path.parent) not in refused.get_data(as_text=True)
        # Nobody approves under a broken file, and nothing already cached is handed out.
        with pytest.raises(Conflict, match="scope payments is invalid"):
            broker.services.approvals.decide(pending, "alice", "approve", "link")
        # The other scopes go on.
        assert (
            broker.post("/v1/credentials", READ_LEDGER, agent="ledger-maintainer").status_code
            == 200
        )

        ready = broker.client.get("/readyz").get_json()
        assert (
            len(ready["invalid_scopes"]["payments"]) == 2
            and where in ready["invalid_scopes"]["payments"]
        )
        assert str(path.parent) not in broker.client.get("/readyz").get_data(as_text=True)
        alerts = [
            c for c in fake_slack.api("chat.postMessage") if c.body["channel"] == DEFAULT_CHANNEL
        ]
        assert len(alerts) == 1 and "Scope payments is invalid" in alerts[0].body["text"]
        broker.services.scopes.reload()  # the same breakage seen again: no second alert
        assert (
            len(
                [
                    c
                    for c in fake_slack.api("chat.postMessage")
                    if c.body["channel"] == DEFAULT_CHANNEL
                ]
            )
            == 1
        )

        path.write_text(path.read_text().replace("tll: 1h", "ttl: 1h", 1))
        with caplog.at_level(logging.INFO, logger="broker.scopes.holder"):
            fixed = broker.services.scopes.reload()
        assert fixed.applied and "payments" in fixed.changed
        assert any(
            "scope reload: served again (fixed) payments" in r.getMessage() for r in caplog.records
        )
        assert broker.post("/v1/credentials", READ_PAYMENTS).status_code == 200
        assert broker.client.get("/readyz").get_json()["invalid_scopes"] == {}
    finally:
        broker.services.close()


def test_a_scope_broken_before_the_start_is_named_too(broker: Broker) -> None:
    """Restarted with the broken file: the service is still named, not an unknown 404."""
    from broker.services import build_services

    _break(broker)
    again = build_services(broker.services.settings, store=broker.services.store)
    assert list(again.scopes.current.invalid) == ["payments"]


def test_an_unreadable_file_takes_its_last_service_out(broker: Broker) -> None:
    path = broker.services.settings.scopes_dir / "payments.yaml"
    path.write_text("metadata: [unclosed\n")
    outcome = broker.services.scopes.reload()
    assert outcome.invalid == {"payments"}
    assert broker.post("/v1/credentials", READ_PAYMENTS).get_json()["error"] == "scope_invalid"


def test_a_good_reload_is_logged_with_what_changed(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    scopes = broker.services.settings.scopes_dir
    path = scopes / "payments.yaml"
    path.write_text(path.read_text().replace("rate_limit: 10/h", "rate_limit: 5/h", 1))
    (scopes / "ledger-secrets.yaml").unlink()
    with caplog.at_level(logging.INFO, logger="broker.scopes.holder"):
        assert broker.services.scopes.reload().applied
    (message,) = [r.getMessage() for r in caplog.records if "scope reload" in r.getMessage()]
    assert message == "scope reload: removed ledger; changed payments"
