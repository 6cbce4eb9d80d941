"""An intent on POST /v1/credentials, over HTTP: what the answer says, what is refused and
named, what is stored and audited, and what collection issues (fake backends here; real
ones in test_enforced_requests.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.intent.compile import session_policy
from broker.intent.model import AwsTarget
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import iam_database
from tests.approvals.flows import approve_via_page, link_token
from tests.fixtures.broker import Broker
from tests.intent.support import (
    ACCOUNT,
    DOC,
    REGION,
    TABLE,
    acme_data,
    fixture,
    intent_broker,
    plan_request,
    resource_change,
)
from tests.scopes.factory import write_scope

AGENT = "acme"


@pytest.fixture()
def acme(tmp_path: Path) -> Iterator[Broker]:
    made = intent_broker(tmp_path)
    yield made
    made.services.close()


def post(broker: Broker, body: dict[str, Any]) -> Any:
    return broker.post("/v1/credentials", body, agent=AGENT)


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    error: dict[str, Any] = response.get_json()
    assert error["error"] == code, error
    return error


def audit_of(broker: Broker, request_id: str) -> list[Any]:
    return list(broker.services.store.audit_records(request_id=request_id))


def test_a_plan_updating_one_object_waits_for_write_and_answers_with_its_hash(
    acme: Broker,
) -> None:
    plan = fixture("plan_s3_object_update")
    expected = parse_intent(
        {"terraform_plan": plan}, "aws", iam_database(), AwsTarget(ACCOUNT, REGION)
    )
    response = post(acme, plan_request(plan, tier="read"))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["intent"] == {
        "sha256": expected.sha256,
        "operations": len(expected.operations),
        "destructive": 0,
        "replacements": [],
        "tier": "write",  # the intent decides, not the tier the agent named
    }
    record = acme.services.approvals.get(body["request_id"])
    assert (record.tier, record.approvals_required) == ("write", 1)
    assert record.intent == expected.canonical_json
    assert record.intent_sha256 == expected.sha256
    assert record.resources == ()
    status = acme.client.get(f"/v1/requests/{record.id}", headers=acme.headers(AGENT))
    assert status.get_json()["intent_sha256"] == expected.sha256
    [opened] = [r for r in audit_of(acme, record.id) if r.outcome == "pending"]
    assert opened.details["intent"] == expected.canonical_json
    assert opened.details["intent_sha256"] == expected.sha256


def test_a_replacement_needs_the_delete_rule_whatever_tier_was_named(acme: Broker) -> None:
    response = post(acme, plan_request(fixture("plan_dynamodb_replace"), tier="write"))
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["intent"]["replacements"] == ["aws_dynamodb_table.ledger"]
    assert body["intent"]["tier"] == "delete"
    assert body["intent"]["destructive"] >= 1
    record = acme.services.approvals.get(body["request_id"])
    assert (record.tier, record.approvals_required, record.delay_seconds) == ("delete", 2, 600)


def test_an_operation_outside_the_scope_is_refused_naming_it(acme: Broker) -> None:
    outside = "arn:aws:s3:::acme-prod-backups/db.dump"
    intent = {"operations": [{"action": "s3:PutObject", "resource": DOC}]}
    intent["operations"].append({"action": "s3:PutObject", "resource": outside})
    body = {**plan_request({}), "intent": intent}
    error = refused(post(acme, body), 400, "intent_outside_scope")
    assert [op["resource"] for op in error["operations"]] == [outside]
    assert error["operations"][0]["action"] == "s3:PutObject"
    assert "no tier of scope acme grants it" in error["operations"][0]["reason"]
    assert outside in error["message"]
    assert acme.services.store.count_requests("pending") == 0


def test_an_unsupported_resource_type_is_refused_naming_it(acme: Broker) -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_object.invoice_template")
    change.update(type="aws_kinesis_stream", address="aws_kinesis_stream.events")
    error = refused(post(acme, plan_request(plan)), 400, "unsupported_resource_type")
    assert error["resource_type"] == "aws_kinesis_stream"
    assert error["address"] == "aws_kinesis_stream.events"
    assert "aws_kinesis_stream" in error["message"]


def test_a_plan_with_a_wildcard_name_is_refused_naming_the_field(acme: Broker) -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_object.invoice_template")
    for values in (change["change"]["before"], change["change"]["after"]):
        values["key"] = "templates/*"
    error = refused(post(acme, plan_request(plan)), 400, "invalid_intent")
    assert error["field"].startswith("intent.terraform_plan.resource_changes[1]")
    assert "*" in error["message"]


def test_a_malformed_intent_is_refused_and_opens_nothing(acme: Broker) -> None:
    for intent, phrase in (
        ("rm -rf", "intent must be an object"),
        ({}, "exactly one of"),
        ({"operations": [], "terraform_plan": {}}, "exactly one of"),
        ({"operations": [{"action": "s3:PutObject"}]}, "resource"),
    ):
        body = {**plan_request({}), "intent": intent}
        response = post(acme, body)
        assert response.status_code == 400, (intent, response.get_json())
        assert phrase in response.get_json()["message"], response.get_json()
    both = {**plan_request(fixture("plan_s3_object_update")), "resources": [DOC]}
    assert "not both" in refused(post(acme, both), 400, "bad_request")["message"]
    assert acme.services.store.count_requests("pending") == 0


def test_a_read_only_intent_is_issued_at_once_with_exactly_its_policy(acme: Broker) -> None:
    intent = {"operations": [{"action": "s3:GetObject", "resource": DOC}]}
    body = {**plan_request({}), "tier": "read", "intent": intent}
    first = post(acme, body)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["intent"]["tier"] == "read"
    call = acme.issuers["aws"].calls[-1]
    assert call.tier == "read"
    assert call.session_policy["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [DOC],
            "Condition": {"StringEquals": {"aws:RequestedRegion": [REGION]}},
        }
    ]
    # Never from the cache: a cached credential may have been minted for another intent.
    second = post(acme, body)
    assert second.get_json()["cached"] is False
    assert len(acme.issuers["aws"].calls) == 2


def test_collection_issues_exactly_the_approved_intent(acme: Broker) -> None:
    plan = fixture("plan_s3_object_update")
    request_id = post(acme, plan_request(plan)).get_json()["request_id"]
    approve_via_page(acme.client, link_token(acme, request_id, "alice"))
    collected = acme.client.post(
        f"/v1/requests/{request_id}/credentials", headers=acme.headers(AGENT)
    )
    assert collected.status_code == 200, collected.get_json()
    intent = parse_intent(
        {"terraform_plan": plan}, "aws", iam_database(), AwsTarget(ACCOUNT, REGION)
    )
    assert collected.get_json()["intent"]["sha256"] == intent.sha256
    call = acme.issuers["aws"].calls[-1]
    assert (call.tier, call.request_id) == ("write", request_id)
    assert call.session_policy == session_policy(intent, REGION, "write")
    # Every decision on the request names the hash it was about.
    decided = [r for r in audit_of(acme, request_id) if r.action in ("approve", "collect")]
    assert {r.action for r in decided} == {"approve", "collect"}
    assert all(r.details["intent_sha256"] == intent.sha256 for r in decided)


def test_collection_after_the_intents_grant_changed_is_refused(
    acme: Broker, tmp_path: Path
) -> None:
    request_id = post(acme, plan_request(fixture("plan_s3_object_update"))).get_json()["request_id"]
    approve_via_page(acme.client, link_token(acme, request_id, "alice"))
    # The platform team moves s3:PutObject to delete: the intent now needs another rule.
    data = acme_data()
    data["tiers"]["write"]["aws"][0]["actions"] = ["s3:PutObjectTagging"]
    data["tiers"]["delete"]["aws"][0]["actions"].append("s3:PutObject")
    write_scope(tmp_path / "scopes", data, "acme.yaml")
    acme.services.scopes.reload()
    collected = acme.client.post(
        f"/v1/requests/{request_id}/credentials", headers=acme.headers(AGENT)
    )
    error = refused(collected, 403, "forbidden")
    assert "the intent now needs tier delete, not the write that was approved" in error["message"]
    # And when the scope no longer grants it at all:
    data["tiers"]["delete"]["aws"][0]["actions"].remove("s3:PutObject")
    write_scope(tmp_path / "scopes", data, "acme.yaml")
    acme.services.scopes.reload()
    collected = acme.client.post(
        f"/v1/requests/{request_id}/credentials", headers=acme.headers(AGENT)
    )
    assert "no longer grants this request" in refused(collected, 403, "forbidden")["message"]
    assert acme.issuers["aws"].calls == []


def test_a_stored_intent_altered_after_approval_is_never_issued(acme: Broker) -> None:
    request_id = post(acme, plan_request(fixture("plan_s3_object_update"))).get_json()["request_id"]
    approve_via_page(acme.client, link_token(acme, request_id, "alice"))
    record = acme.services.approvals.get(request_id)
    widened = json.loads(record.intent or "")
    widened["operations"].append(
        {"action": "s3:PutObject", "resource": "arn:aws:s3:::acme-prod-docs/x"}
    )
    tampered = json.dumps(widened, sort_keys=True, separators=(",", ":"))
    from sqlalchemy import update

    from broker.store import tables

    with acme.services.store.db.tx() as connection:  # type: ignore[attr-defined]
        connection.execute(
            update(tables.requests)
            .where(tables.requests.c.id == request_id)
            .values(intent=tampered)
        )
    collected = acme.client.post(
        f"/v1/requests/{request_id}/credentials", headers=acme.headers(AGENT)
    )
    assert "does not match its hash" in refused(collected, 403, "forbidden")["message"]
    assert acme.issuers["aws"].calls == []


def test_intent_required_refuses_requests_without_one(tmp_path: Path) -> None:
    data = acme_data()
    data["tiers"]["write"]["intent"] = "required"
    broker = intent_broker(tmp_path, data)
    named = {**plan_request({}), "resources": [DOC]}
    del named["intent"]
    error = refused(post(broker, named), 400, "intent_required")
    assert error["field"] == "intent"
    assert "tier write of acme requires an intent" in error["message"]
    assert post(broker, plan_request(fixture("plan_s3_object_update"))).status_code == 202
    read = {**named, "tier": "read", "resources": []}
    assert post(broker, read).status_code == 200  # read never needs one
    broker.services.close()


def test_max_destructive_caps_what_one_intent_destroys(tmp_path: Path) -> None:
    data = acme_data()
    data["tiers"]["delete"].update(intent="required", max_destructive=1)
    broker = intent_broker(tmp_path, data)
    one = {"operations": [{"action": "s3:DeleteObject", "resource": DOC}]}
    two = {
        "operations": [*one["operations"], {"action": "dynamodb:DeleteTable", "resource": TABLE}]
    }
    assert post(broker, {**plan_request({}), "intent": one}).status_code == 202
    error = refused(post(broker, {**plan_request({}), "intent": two}), 403, "blast_radius_exceeded")
    assert "destroys 2 thing(s)" in error["message"] and "at most 1" in error["message"]
    broker.services.close()


def test_max_resources_counts_what_the_intent_names(tmp_path: Path) -> None:
    data = acme_data()
    data["tiers"]["write"]["max_resources"] = 1
    broker = intent_broker(tmp_path, data)
    intent = {
        "operations": [
            {"action": "s3:PutObject", "resource": DOC},
            {"action": "s3:PutObject", "resource": "arn:aws:s3:::acme-prod-docs/templates/b.html"},
        ]
    }
    error = refused(
        post(broker, {**plan_request({}), "intent": intent}), 403, "blast_radius_exceeded"
    )
    assert "names 2 resources" in error["message"]
    broker.services.close()


def test_a_large_plan_fits_where_other_bodies_do_not(acme: Broker) -> None:
    plan = fixture("plan_s3_object_update")
    plan["planned_values"]["padding"] = "x" * 200_000  # ignored by the broker
    assert post(acme, plan_request(plan)).status_code == 202
    named = {**plan_request({}), "resources": [DOC], "justification": "x" * 2000}
    del named["intent"]
    named["padding"] = "y" * 100_000
    assert refused(post(acme, named), 413, "payload_too_large")
    # Plans nest deeper than other bodies may.
    deep: Any = "leaf"
    for _ in range(60):
        deep = {"nested": deep}
    plan["planned_values"]["deep"] = deep
    assert post(acme, plan_request(plan)).status_code == 202
    named.pop("padding")
    named["duration"] = deep
    assert "deeper than 32" in refused(post(acme, named), 400, "bad_request")["message"]


def test_a_plan_nested_too_deeply_is_told_the_limit_intents_have(acme: Broker) -> None:
    """Inside an intent the limit is 100 levels (docs/intents.md), and the refusal says so."""
    plan = fixture("plan_s3_object_update")
    deep: Any = "leaf"
    for _ in range(150):
        deep = {"nested": deep}
    plan["planned_values"]["deep"] = deep
    message = refused(post(acme, plan_request(plan)), 400, "bad_request")["message"]
    assert "deeper than 100 levels inside intent" in message, message


def test_plan_values_are_never_stored_or_audited(acme: Broker) -> None:
    plan = fixture("plan_s3_object_update")
    secret = "AKIA-plan-secret-value-0123456789"
    change = resource_change(plan, "aws_s3_object.invoice_template")
    change["change"]["after"]["content"] = secret
    change["change"]["after_sensitive"]["content"] = True
    request_id = post(acme, plan_request(plan)).get_json()["request_id"]
    record = acme.services.approvals.get(request_id)
    assert secret not in repr(record)
    assert all(secret not in json.dumps(r.details) for r in audit_of(acme, request_id))
