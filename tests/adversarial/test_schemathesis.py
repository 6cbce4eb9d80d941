"""schemathesis against /v1/openapi.json: no 500, no answer the document does not describe.

The document is loaded from the running app (in-process, over WSGI) and every operation is
fuzzed with data that fits the document (positive) and data that does not (negative), as a
broker-minted agent that is a requester of the example scopes. The checks: no server
error, every status and content type documented, every body valid against its schema,
documented headers present, authentication never ignored (schemathesis repeats requests
without and with a wrong token), invalid data refused with a 4xx, and data that fits the
document refused as malformed (400) only for reasons a schema cannot express (a resource
outside the tier, an environment without that backend...).

Random names mostly reach "no such scope", so two more runs aim deeper: credential
requests built from the real scopes' names and resources, and the request endpoints with
the ids of real requests in every state. The kill switch runs last, as an admin, in a
broker of its own (a revocation freezes what it names). Examples are bounded and
derandomized: the run is repeatable and takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from tests.adversarial.support import ADMIN, patient_broker
from tests.approvals.flows import (
    DELETE_LEDGER,
    LEDGER_AGENT,
    WRITE_PAYMENTS,
    approve_via_page,
    collect,
    link_token,
    open_request,
)
from tests.fixtures.broker import READ_PAYMENTS, Broker

AGENT = "payments-copilot"
MAX_EXAMPLES = 30
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)

# A 400 for data that fits the document is a lie of the document, except for these fields
# ("*": any), whose rules depend on the loaded scopes or on several fields together.
SEMANTIC_400: dict[str, frozenset[str]] = {
    # An intent's rules depend on the scope (docs/intents.md); its errors name a JSON path
    # inside it (intent.terraform_plan.resource_changes[3]...).
    "POST /v1/credentials": frozenset({"resources", "backend", "region", "intent"}),
    "POST /v1/revoke": frozenset({"*"}),
    "POST /v1/unfreeze": frozenset({"*"}),
}


def malformed_only_where_the_schema_cannot_say(ctx: Any, response: Any, case: Any) -> None:
    """A schema-valid request refused as malformed must be refused for a semantic reason."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    allowed = SEMANTIC_400.get(case.operation.label, frozenset())
    field = json.loads(response.content).get("field")
    inside = isinstance(field, str) and field.split(".", 1)[0].split("[", 1)[0] in allowed
    if "*" not in allowed and field not in allowed and not inside:
        raise AssertionError(
            f"{case.operation.label}: data that fits the document was refused as malformed "
            f"(field {field!r}): {response.content[:300]!r}; the document should say why"
        )


CHECKS: list[Callable[..., Any]] = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
    malformed_only_where_the_schema_cannot_say,
]

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture()
def fuzzed(tmp_path: Path) -> Iterator[Broker]:
    made = patient_broker(tmp_path)
    yield made
    made.services.close()


def _schema(broker: Broker) -> Any:
    return schemathesis.openapi.from_wsgi("/v1/openapi.json", broker.app)


def _has_input(operation: Any) -> bool:
    return bool(operation.path_parameters or operation.query or operation.body)


def fuzz(
    broker: Broker,
    agent: str,
    operations: Callable[[Any], bool],
    strategy: Callable[[Any, GenerationMode], Any],
    modes: tuple[GenerationMode, ...] = MODES,
    max_examples: int = MAX_EXAMPLES,
) -> tuple[list[str], dict[tuple[str, int], int]]:
    """Run every chosen operation; return the failures (one line each) and status counts."""
    failures: list[str] = []
    statuses: dict[tuple[str, int], int] = {}
    headers = broker.headers(agent)
    for result in _schema(broker).get_all_operations():
        operation = result.ok()
        if not operations(operation):
            continue
        for mode in modes:
            if mode is GenerationMode.NEGATIVE and not _has_input(operation):
                continue  # nothing to make invalid

            @settings(FUZZ_SETTINGS, max_examples=max_examples)
            @given(case=strategy(operation, mode))
            def run(case: Any) -> None:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
                key = (case.operation.label, response.status_code)
                statuses[key] = statuses.get(key, 0) + 1

            try:
                run()
            except Exception as e:  # noqa: BLE001 - reported below, one line per operation
                failures.append(f"{operation.label} ({mode.value}): {e}")
    return failures, statuses


def _plain(operation: Any, mode: GenerationMode) -> Any:
    return operation.as_strategy(generation_mode=mode)


def test_every_operation_as_an_agent(fuzzed: Broker) -> None:
    failures, statuses = fuzz(fuzzed, AGENT, lambda op: "/revoke" not in op.path, _plain)
    assert not failures, "\n\n".join(failures)
    labels = {label for label, _ in statuses}
    assert "POST /v1/credentials" in labels and "GET /v1/requests/{request_id}" in labels
    assert not any(status >= 500 for _, status in statuses)


# -- credential requests built from the real scopes -------------------------------------

RESOURCES = [
    "arn:aws:s3:::payments-prod-invoices",
    "arn:aws:s3:::payments-prod-invoices/2026/11/inv-1.pdf",
    "arn:aws:s3:::payments-prod-invoices/*",
    "arn:aws:s3:::payments-staging-invoices/a",
    "arn:aws:dynamodb:us-east-1:111111111111:table/payments-prod-ledger",
    "arn:aws:dynamodb:eu-west-1:111111111111:table/payments-prod-ledger",
    "arn:aws:rds:us-east-1:111111111111:snapshot:payments-prod-2026",
    "arn:aws:rds:us-east-1:111111111111:db:payments-prod",
    "*",
    "arn:aws:s3:::*",
    "payments/prod/api-key",
    "payments/prod/*",
    "ledger/prod/obsolete-key",
    "ledger/prod/+",
    "public.invoices",
    "public.*",
    "ledger.entries",
]


HONEST: dict[str, list[dict[str, Any]]] = {
    "payments": [READ_PAYMENTS, WRITE_PAYMENTS],
    "ledger": [{**DELETE_LEDGER, "tier": "read", "resources": []}, DELETE_LEDGER],
}


@st.composite
def credential_bodies(draw: st.DrawFn, own: str) -> dict[str, Any]:
    """Bodies that fit the document, naming real scopes, tiers, backends and resources.

    Mostly the agent's ``own`` scope, so that most requests get past intake; one in four is
    an honest request of that scope (a read and an escalation), so that both answers are
    reached whatever the random stream draws.
    """
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        return dict(draw(st.sampled_from(HONEST[own])))
    backend = draw(st.sampled_from(["aws", "vault", "database"]))
    body: dict[str, Any] = {
        "service": draw(st.sampled_from([own, own, own, "payments", "ledger", "deploy", "nope"])),
        "environment": draw(st.sampled_from(["prod", "prod", "staging", "dev"])),
        "tier": draw(st.sampled_from(["read", "read", "write", "delete"])),
        "backend": backend,
    }
    regions = ["us-east-1", "eu-west-1", "us-west-2", None]
    if backend != "aws" or draw(st.booleans()):
        regions += ["absent"] * 4
    region = draw(st.sampled_from(regions))
    if region != "absent":
        body["region"] = region
    if draw(st.booleans()):
        body["resources"] = draw(
            st.lists(
                st.sampled_from(RESOURCES) | st.from_regex(r"[a-z0-9:/*.+-]{1,60}", fullmatch=True),
                max_size=6,
                unique=True,
            )
        )
    if draw(st.booleans()):
        body["duration"] = draw(st.integers(min_value=1, max_value=10**6))
    if draw(st.booleans()):
        body["justification"] = draw(st.text(max_size=80))
    return body


def _informed(own: str) -> Callable[[Any, GenerationMode], Any]:
    def strategy(operation: Any, mode: GenerationMode) -> Any:
        def with_body(pair: tuple[dict[str, Any], Any]) -> Any:
            body, case = pair
            case.body = body
            return case

        cases = operation.as_strategy(generation_mode=mode)
        # The body is drawn first, so the bodies tried do not change when the document's
        # schemas (drawn from the same derandomized stream) do.
        return st.tuples(credential_bodies(own), cases).map(with_body)

    return strategy


@pytest.mark.parametrize(("agent", "own"), [(AGENT, "payments"), (LEDGER_AGENT, "ledger")])
def test_credential_requests_for_real_scopes(fuzzed: Broker, agent: str, own: str) -> None:
    failures, statuses = fuzz(
        fuzzed,
        agent,
        lambda op: op.label == "POST /v1/credentials",
        _informed(own),
        modes=(GenerationMode.POSITIVE,),
        max_examples=100,
    )
    assert not failures, "\n\n".join(failures)
    reached = {status for _, status in statuses}
    assert {200, 202} <= reached, statuses  # the fuzzing got past intake, both ways


# -- the request endpoints with real ids ------------------------------------------------


def _requests_in_every_state(broker: Broker) -> dict[str, str]:
    """One request id per state (the payments agent's); the wait is forced to 0 for open ones."""
    pending = open_request(broker, WRITE_PAYMENTS)
    denied = open_request(
        broker, {**WRITE_PAYMENTS, "resources": ["arn:aws:s3:::payments-prod-invoices/d"]}
    )
    approve_via_page(broker.app.test_client(), link_token(broker, denied, "bob"), "deny", "no")
    collected = open_request(
        broker, {**WRITE_PAYMENTS, "resources": ["arn:aws:s3:::payments-prod-invoices/c"]}
    )
    approve_via_page(broker.app.test_client(), link_token(broker, collected, "alice"))
    assert collect(broker, collected).status_code == 200
    approved = open_request(
        broker, {**WRITE_PAYMENTS, "resources": ["arn:aws:s3:::payments-prod-invoices/a"]}
    )
    approve_via_page(broker.app.test_client(), link_token(broker, approved, "alice"))
    others = open_request(broker, DELETE_LEDGER, agent=LEDGER_AGENT)  # not this agent's
    issued = broker.post("/v1/credentials", READ_PAYMENTS).get_json()["request_id"]
    return {  # in this order, whatever the ids: the run is repeatable
        pending: "pending",
        approved: "approved",
        denied: "denied",
        collected: "collected",
        others: "another agent's",
        issued: "a read",
    }


def test_request_endpoints_with_real_ids(fuzzed: Broker) -> None:
    ids = _requests_in_every_state(fuzzed)
    open_ids = [i for i, state in ids.items() if state in ("pending", "approved")]

    def with_real_id(operation: Any, mode: GenerationMode) -> Any:
        def choose(pair: tuple[Any, str]) -> Any:
            case, request_id = pair
            case.path_parameters = {**(case.path_parameters or {}), "request_id": request_id}
            if request_id in open_ids and case.query:
                case.query = {**case.query, "wait": 0}  # a long poll would really wait
            return case

        return st.tuples(
            operation.as_strategy(generation_mode=mode), st.sampled_from(list(ids))
        ).map(choose)

    failures, statuses = fuzz(
        fuzzed,
        AGENT,
        # Withdrawing (DELETE) would cancel the open requests the other operations need.
        lambda op: "{request_id}" in op.path and op.method.upper() != "DELETE",
        with_real_id,
        modes=(GenerationMode.POSITIVE,),
    )
    assert not failures, "\n\n".join(failures)
    assert {200, 404, 409} <= {status for _, status in statuses}, statuses


# -- the kill switch, as an admin, alone ------------------------------------------------


def test_the_kill_switch_as_an_admin(fuzzed: Broker) -> None:
    fuzzed.post("/v1/credentials", READ_PAYMENTS)
    open_request(fuzzed, WRITE_PAYMENTS)
    failures, statuses = fuzz(
        fuzzed, ADMIN, lambda op: op.path in ("/v1/revoke", "/v1/unfreeze"), _plain
    )
    assert not failures, "\n\n".join(failures)
    assert {200, 400} <= {status for _, status in statuses}, statuses
