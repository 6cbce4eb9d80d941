"""The OpenAPI document at /v1/openapi.json is valid, complete and true.

Complete: every route the app serves under /v1, plus /healthz and /readyz, is documented
with the methods it accepts, and every documented operation is served. True: real
responses of the main flows, each error shape included, validate against the schema the
document gives for their status code, and a status the document does not list for an
operation fails the test. Validation is strict: an object with documented ``properties``
may not carry undocumented ones, so a field added to a response without updating the
document is caught.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_spec_validator import validate as validate_spec
from werkzeug.test import TestResponse

from broker.api.openapi import spec
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    approve_via_page,
    link_token,
    open_request,
)
from tests.fixtures.broker import READ_PAYMENTS, Broker, FakeIssuer, make_broker

DOCUMENTED_OUTSIDE_V1 = {"/healthz", "/readyz"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
ADMIN = "ops"


# -- the checker ------------------------------------------------------------------------


def _resolve(document: dict[str, Any], node: Any) -> Any:
    """``node`` with every local ``$ref`` inlined (the document has no recursive schemas)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(document, target)
        return {key: _resolve(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(document, item) for item in node]
    return node


def _strict(schema: Any) -> Any:
    """Objects with documented properties accept no others (unless the document says so)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


def operation(method: str, path: str) -> dict[str, Any]:
    document = spec()
    assert path in document["paths"], f"{path} is not documented"
    operations = document["paths"][path]
    assert method.lower() in operations, f"{method} {path} is not documented"
    resolved: dict[str, Any] = _resolve(document, operations[method.lower()])
    return resolved


def check(response: TestResponse, method: str, path: str) -> dict[str, Any]:
    """Validate a real response against the document; return its JSON body."""
    responses = operation(method, path)["responses"]
    status = str(response.status_code)
    assert status in responses, (
        f"{method} {path} answered {status}, which the document does not list "
        f"(it lists {sorted(responses)}): {response.get_data(as_text=True)[:300]}"
    )
    documented = responses[status]
    assert response.mimetype == "application/json", response.mimetype
    assert "application/json" in documented["content"]
    body: dict[str, Any] = response.get_json()
    schema = _strict(copy.deepcopy(documented["content"]["application/json"]["schema"]))
    OAS30Validator(schema, format_checker=oas30_format_checker).validate(body)
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{method} {path} {status} lacks header {header}"
    return body


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture()
def admin_broker(tmp_path: Path) -> Iterator[Broker]:
    made = make_broker(tmp_path, admins=(f"agent:{ADMIN}",))
    yield made
    made.services.close()


def _template(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def served_operations(app: Flask) -> set[tuple[str, str]]:
    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        path = _template(rule.rule)
        if path.startswith("/v1/") or path in DOCUMENTED_OUTSIDE_V1:
            served.update((m, path) for m in (rule.methods or set()) - IGNORED_METHODS)
    return served


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in spec()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }


# -- the document -----------------------------------------------------------------------


def test_the_served_document_is_valid_openapi(broker: Broker) -> None:
    response = broker.client.get("/v1/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.get_json() == spec()
    validate_spec(response.get_json())


def test_every_route_is_documented_and_every_documented_operation_is_served(
    broker: Broker,
) -> None:
    served = served_operations(broker.app)
    documented = documented_operations()
    assert not served - documented, f"served but not documented: {sorted(served - documented)}"
    assert not documented - served, f"documented but not served: {sorted(documented - served)}"


def test_the_route_comparison_sees_a_missing_route(broker: Broker) -> None:
    """The comparison can fail: a route added to the app without the document is reported."""
    broker.app.add_url_rule("/v1/undocumented/<thing>", "undocumented", lambda thing: thing)
    missing = served_operations(broker.app) - documented_operations()
    assert missing == {("GET", "/v1/undocumented/{thing}")}


def test_the_checker_catches_an_undocumented_field(broker: Broker) -> None:
    """Strictness can fail: a response carrying a field the document lacks is refused."""
    response = broker.post("/v1/credentials", READ_PAYMENTS)
    body = response.get_json()
    response.set_data(response.get_data(as_text=True).replace('"cached"', '"extra":1,"cached"'))
    assert body is not None
    with pytest.raises(Exception, match="Additional properties"):
        check(response, "POST", "/v1/credentials")


# -- the main flows ---------------------------------------------------------------------


def test_health_and_readiness(broker: Broker) -> None:
    check(broker.client.get("/healthz"), "GET", "/healthz")
    assert check(broker.client.get("/readyz"), "GET", "/readyz")["status"] == "ready"


def test_readiness_with_an_upstream_down(broker: Broker) -> None:
    aws = broker.issuers["aws"]
    assert isinstance(aws, FakeIssuer)
    aws.down = True
    body = check(broker.client.get("/readyz"), "GET", "/readyz")
    assert body["status"] == "not ready" and body["checks"]["aws"] != "ok"


def test_read_is_issued_then_cached(broker: Broker) -> None:
    first = check(broker.post("/v1/credentials", READ_PAYMENTS), "POST", "/v1/credentials")
    again = check(broker.post("/v1/credentials", READ_PAYMENTS), "POST", "/v1/credentials")
    assert first["status"] == "issued" and again["cached"] is True
    scopes = check(broker.client.get("/v1/scopes", headers=broker.headers()), "GET", "/v1/scopes")
    assert [s["service"] for s in scopes["scopes"]] == ["payments"]


def test_an_escalation_from_pending_to_collected(broker: Broker) -> None:
    response = broker.post("/v1/credentials", WRITE_PAYMENTS)
    assert response.status_code == 202
    pending = check(response, "POST", "/v1/credentials")
    request_id = pending["request_id"]
    path = "/v1/requests/{request_id}"
    collect_path = "/v1/requests/{request_id}/credentials"
    state = check(
        broker.client.get(f"/v1/requests/{request_id}", headers=broker.headers()), "GET", path
    )
    assert state["status"] == "pending"
    early = broker.client.post(f"/v1/requests/{request_id}/credentials", headers=broker.headers())
    assert early.status_code == 409
    check(early, "POST", collect_path)
    assert (
        approve_via_page(broker.client, link_token(broker, request_id, "alice")).status_code == 200
    )
    collected = broker.client.post(
        f"/v1/requests/{request_id}/credentials", headers=broker.headers()
    )
    assert collected.status_code == 200
    check(collected, "POST", collect_path)
    state = check(
        broker.client.get(f"/v1/requests/{request_id}", headers=broker.headers()), "GET", path
    )
    assert state["status"] == "collected"
    twice = broker.client.post(f"/v1/requests/{request_id}/credentials", headers=broker.headers())
    assert twice.status_code == 410
    check(twice, "POST", collect_path)


def test_a_delayed_and_a_denied_request(broker: Broker) -> None:
    delayed = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)
    for approver in ("carol", "dave"):
        approve_via_page(broker.app.test_client(), link_token(broker, delayed, approver))
    headers = broker.headers(LEDGER_AGENT)
    state = check(
        broker.client.get(f"/v1/requests/{delayed}", headers=headers),
        "GET",
        "/v1/requests/{request_id}",
    )
    assert state["status"] == "approved" and state["collectable_at"] is not None
    early = broker.client.post(f"/v1/requests/{delayed}/credentials", headers=headers)
    assert early.status_code == 409
    check(early, "POST", "/v1/requests/{request_id}/credentials")
    denied = open_request(broker, WRITE_PAYMENTS)
    approve_via_page(broker.client, link_token(broker, denied, "bob"), "deny", "no")
    refused = broker.client.post(f"/v1/requests/{denied}/credentials", headers=broker.headers())
    assert refused.status_code == 403
    check(refused, "POST", "/v1/requests/{request_id}/credentials")
    state = check(
        broker.client.get(f"/v1/requests/{denied}", headers=broker.headers()),
        "GET",
        "/v1/requests/{request_id}",
    )
    assert state["status"] == "denied" and state["reason"]


# -- every error shape ------------------------------------------------------------------


def test_error_shapes_of_the_credentials_endpoint(broker: Broker) -> None:
    client, headers = broker.client, broker.headers()
    cases: list[tuple[int, TestResponse]] = [
        (400, broker.post("/v1/credentials", {**READ_PAYMENTS, "tier": "admin"})),
        (401, client.post("/v1/credentials", json=READ_PAYMENTS)),
        (401, client.post("/v1/credentials", json=READ_PAYMENTS, headers={"Authorization": "x"})),
        (403, broker.post("/v1/credentials", {**READ_PAYMENTS, "service": "ledger"})),
        (404, broker.post("/v1/credentials", {**READ_PAYMENTS, "service": "nope"})),
        (
            413,
            client.post(
                "/v1/credentials",
                data=b"{" + b" " * 70_000 + b"}",
                headers={**headers, "Content-Type": "application/json"},
            ),
        ),
        (415, client.post("/v1/credentials", data="service=payments", headers=headers)),
    ]
    for expected, response in cases:
        assert response.status_code == expected, response.get_json()
        body = check(response, "POST", "/v1/credentials")
        assert body["request_id"] == response.headers["X-Request-ID"]
    assert cases[0][1].get_json()["field"] == "tier"


def test_rate_limited_carries_retry_after(broker: Broker) -> None:
    statuses = []
    for n in range(11):  # payments write: 10/h
        body = {**WRITE_PAYMENTS, "resources": [f"arn:aws:s3:::payments-prod-invoices/{n}"]}
        response = broker.post("/v1/credentials", body)
        statuses.append(response.status_code)
        check(response, "POST", "/v1/credentials")
    assert statuses == [202] * 10 + [429]
    assert int(response.headers["Retry-After"]) >= 1


def test_upstream_unavailable(broker: Broker) -> None:
    aws = broker.issuers["aws"]
    assert isinstance(aws, FakeIssuer)
    aws.down = True
    response = broker.post("/v1/credentials", READ_PAYMENTS)
    assert response.status_code == 503
    assert check(response, "POST", "/v1/credentials")["backend"] == "aws"


def test_error_shapes_of_the_request_endpoints(broker: Broker) -> None:
    headers = broker.headers()
    unknown = "req_" + "a" * 26
    for expected, url in (
        (400, "/v1/requests/not-an-id"),
        (400, f"/v1/requests/{unknown}?wait=31"),
        (401, None),
        (404, f"/v1/requests/{unknown}"),
    ):
        response = (
            broker.client.get(f"/v1/requests/{unknown}")
            if url is None
            else broker.client.get(url, headers=headers)
        )
        assert response.status_code == expected
        check(response, "GET", "/v1/requests/{request_id}")
    for expected, url in ((400, "/v1/requests/x/credentials"), (404, f"/v1/requests/{unknown}")):
        response = broker.client.post(
            url if expected == 400 else f"{url}/credentials", headers=headers
        )
        assert response.status_code == expected
        check(response, "POST", "/v1/requests/{request_id}/credentials")
    scopes = broker.client.get("/v1/scopes")
    assert scopes.status_code == 401
    check(scopes, "GET", "/v1/scopes")


# -- the kill switch --------------------------------------------------------------------


def test_revoke_and_unfreeze_for_an_admin(admin_broker: Broker) -> None:
    broker = admin_broker
    broker.post("/v1/credentials", READ_PAYMENTS)
    revoked = broker.post(
        "/v1/revoke", {"agent": "agent:payments-copilot", "reason": "drill"}, agent=ADMIN
    )
    assert revoked.status_code == 200, revoked.get_json()
    report = check(revoked, "POST", "/v1/revoke")
    assert report["complete"] is True and report["frozen"]
    lifted = broker.post(
        "/v1/unfreeze", {"agent": "agent:payments-copilot", "reason": "drill over"}, agent=ADMIN
    )
    assert check(lifted, "POST", "/v1/unfreeze")["lifted"] == 1


def test_revoke_reports_an_unreachable_backend_with_207(admin_broker: Broker) -> None:
    broker = admin_broker
    ledger = {"service": "ledger", "environment": "prod", "tier": "read", "backend": "vault"}
    assert broker.post("/v1/credentials", ledger, agent=LEDGER_AGENT).status_code == 200
    vault = broker.issuers["vault"]
    assert isinstance(vault, FakeIssuer)
    vault.down = True
    response = broker.post(
        "/v1/revoke", {"agent": f"agent:{LEDGER_AGENT}", "reason": "drill"}, agent=ADMIN
    )
    assert response.status_code == 207
    report = check(response, "POST", "/v1/revoke")
    assert report["complete"] is False and report["backends"]["vault"]["failed"] == 1


def test_kill_switch_error_shapes(admin_broker: Broker) -> None:
    broker = admin_broker
    for path in ("/v1/revoke", "/v1/unfreeze"):
        cases = [
            (400, broker.post(path, {"agent": "a", "service": "b", "reason": "x y"}, agent=ADMIN)),
            (400, broker.post(path, ["all"], agent=ADMIN)),
            (401, broker.client.post(path, json={"all": True, "reason": "x y z"})),
            (403, broker.post(path, {"all": True, "reason": "not mine"})),
            (
                415,
                broker.client.post(path, data="all=true", headers=broker.headers(ADMIN)),
            ),
        ]
        for expected, response in cases:
            assert response.status_code == expected, (path, response.get_json())
            check(response, "POST", path)
    no_reason = broker.post("/v1/revoke", {"all": True}, agent=ADMIN)
    assert no_reason.status_code == 400
    assert check(no_reason, "POST", "/v1/revoke")["field"] == "reason"
