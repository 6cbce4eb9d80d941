"""The blast-radius cap: a write/delete request naming too much is refused at intake, before
any approver is told and before any pending request exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.broker import Broker
from tests.guard.helpers import (
    AGENT,
    DELETE,
    WRITE,
    RecordingNotifier,
    guard_broker,
)

OBJECT = "arn:aws:s3:::shop-prod-data/exports/{}.csv"
TABLE = "arn:aws:dynamodb:us-east-1:111111111111:table/shop-prod-orders"


@pytest.fixture()
def made(tmp_path: Path) -> tuple[Broker, RecordingNotifier]:
    return guard_broker(tmp_path)


def refused(made: tuple[Broker, RecordingNotifier], body: dict[str, Any]) -> str:
    """Post ``body``; assert the cap refused it and nothing reached an approver."""
    broker, notifier = made
    response = broker.post("/v1/credentials", body, agent=AGENT)
    assert response.status_code == 403, response.json
    assert response.json["error"] == "blast_radius_exceeded"
    assert notifier.opened == []  # no approver was bothered
    assert broker.services.store.list_requests() == []  # no pending request exists
    [record] = [r for r in broker.services.store.recent_audit() if r.action == "request"]
    assert (record.outcome, record.details["error"]) == ("denied", "blast_radius_exceeded")
    return str(response.json["message"])


def test_a_write_over_the_tiers_cap_is_refused(made: tuple[Broker, RecordingNotifier]) -> None:
    body = {**WRITE, "resources": [OBJECT.format(n) for n in range(4)]}
    assert refused(made, body) == ("4 resources named; tier write allows at most 3 per request")


def test_a_delete_over_the_tiers_cap_is_refused(made: tuple[Broker, RecordingNotifier]) -> None:
    body = {**DELETE, "resources": [OBJECT.format(n) for n in range(3)]}
    assert "tier delete allows at most 2" in refused(made, body)


def test_exactly_the_cap_is_allowed(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, notifier = made
    body = {**WRITE, "resources": [OBJECT.format(n) for n in range(3)]}
    assert broker.post("/v1/credentials", body, agent=AGENT).status_code == 202
    assert len(notifier.opened) == 1


@pytest.mark.parametrize(
    "resource",
    [
        "*",
        "arn:aws:s3:::*",
        "arn:aws:s3:::*/*",
        "arn:aws:dynamodb:us-east-1:111111111111:table/*",  # every table
        "arn:aws:dynamodb:us-east-1:*:table/shop-prod-orders",  # every account
        "arn:aws:dynamodb:*:111111111111:table/shop-prod-orders",  # every region
        "arn:aws:*:us-east-1:111111111111:table/shop-prod-orders",  # every service
        "shop-prod-orders",  # not an ARN: cannot be narrowed
    ],
)
def test_naming_everything_is_refused_whatever_the_count(
    made: tuple[Broker, RecordingNotifier], resource: str
) -> None:
    message = refused(made, {**WRITE, "resources": [resource]})
    assert f"'{resource}' names everything" in message


def test_a_wildcard_among_named_resources_is_still_refused(
    made: tuple[Broker, RecordingNotifier],
) -> None:
    refused(made, {**WRITE, "resources": [TABLE, "arn:aws:s3:::*"]})


@pytest.mark.parametrize(
    "body",
    [
        {key: value for key, value in WRITE.items() if key != "resources"},
        {**DELETE, "resources": []},
    ],
)
def test_an_aws_write_or_delete_must_name_its_resources(
    made: tuple[Broker, RecordingNotifier], body: dict[str, Any]
) -> None:
    """Naming nothing is a malformed request (400 resources_required, the field named), not
    an attempt at too much: it must not read as a blast-radius refusal, and it does not feed
    the circuit breaker, however often an agent learning the API sends it."""
    broker, notifier = made
    for _ in range(5):  # more than the breaker's limits for denials and out-of-scope
        response = broker.post("/v1/credentials", body, agent=AGENT)
        assert response.status_code == 400, response.json
        assert response.json["error"] == "resources_required"
        assert response.json["field"] == "resources"
        assert "must name the resources" in response.json["message"]
    assert notifier.opened == [] and notifier.alerts == []
    assert broker.services.store.list_requests() == []
    assert broker.services.store.active_freezes() == []
    fixed = {**body, "resources": [OBJECT.format(1)]}
    assert broker.post("/v1/credentials", fixed, agent=AGENT).status_code == 202


@pytest.mark.parametrize(
    ("backend", "resource"),
    [("vault", "*"), ("vault", "+/*"), ("database", "*"), ("database", "*.*")],
)
def test_naming_everything_is_refused_on_vault_and_the_database(
    made: tuple[Broker, RecordingNotifier], backend: str, resource: str
) -> None:
    body = {**WRITE, "backend": backend, "resources": [resource]}
    del body["region"]
    assert "names everything" in refused(made, body)


def test_a_database_table_wildcard_is_refused(made: tuple[Broker, RecordingNotifier]) -> None:
    body = {**DELETE, "backend": "database", "resources": ["reports.*"]}
    del body["region"]
    refused(made, body)


def test_the_cap_is_checked_before_the_scope_grants_anything(
    made: tuple[Broker, RecordingNotifier],
) -> None:
    """Over the cap with resources the scope would grant: refused by the cap, not later."""
    body = {**WRITE, "resources": [TABLE, *(OBJECT.format(n) for n in range(3))]}
    assert "4 resources named" in refused(made, body)


def test_read_is_not_capped(made: tuple[Broker, RecordingNotifier]) -> None:
    broker, _ = made
    body = {**WRITE, "tier": "read", "resources": [OBJECT.format(n) for n in range(5)]}
    del body["justification"]
    response = broker.post("/v1/credentials", body, agent=AGENT)
    assert response.status_code == 200, response.json
