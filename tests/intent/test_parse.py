"""Hand-written operations, the intent's envelope, and hostile input of every shape."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import BrokerError
from broker.intent.errors import InvalidIntent
from broker.intent.fields import MAX_DEPTH, MAX_NODES
from broker.intent.model import AwsOperation, AwsTarget, DatabaseOperation, Intent, VaultOperation
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import iam_database
from broker.scopes.model import Backend
from tests.intent.support import ACCOUNT, DOC, REGION, TABLE, fixture

TARGET = AwsTarget(ACCOUNT, REGION)


def parse(value: object, backend: Backend = "aws") -> Intent:
    return parse_intent(value, backend, iam_database(), TARGET)


def refusal(value: object, backend: Backend = "aws") -> InvalidIntent:
    with pytest.raises(InvalidIntent) as caught:
        parse(value, backend)
    return caught.value


def test_aws_operations_are_normalized_and_sorted() -> None:
    intent = parse(
        {
            "operations": [
                {"action": "s3:putobject", "resource": DOC},
                {"action": "dynamodb:DeleteTable", "resource": TABLE},
                {"action": "s3:ListAllMyBuckets", "resource": "*"},
            ]
        }
    )
    assert intent.operations == (
        AwsOperation("dynamodb:DeleteTable", TABLE),
        AwsOperation("s3:ListAllMyBuckets", "*"),
        AwsOperation("s3:PutObject", DOC),
    )
    assert intent.kind == "operations" and intent.changes == ()


def test_the_same_operations_in_another_order_have_the_same_hash() -> None:
    ops = [{"action": "s3:PutObject", "resource": DOC}, {"action": "s3:GetObject", "resource": DOC}]
    assert parse({"operations": ops}).sha256 == parse({"operations": ops[::-1]}).sha256
    assert len(parse({"operations": ops}).sha256) == 64


@pytest.mark.parametrize(
    ("operation", "field", "expected"),
    [
        ({"action": "s3:*", "resource": DOC}, "action", "no wildcards"),
        ({"action": "s3:Put*", "resource": DOC}, "action", "no wildcards"),
        ({"action": "s3:FlyToTheMoon", "resource": DOC}, "action", "not an action"),
        ({"action": "s3:PutObject"}, "resource", "is required"),
        ({"action": "s3:PutObject", "resource": 7}, "resource", "string"),
        ({"action": "s3:PutObject", "resource": DOC, "why": "x"}, "", "unknown field 'why'"),
        ({"action": "s3:GetObject", "resource": TABLE}, "resource", "not an ARN of a resource"),
        ({"action": "s3:ListAllMyBuckets", "resource": DOC}, "resource", "must be '*'"),
        ({"action": "s3:PutObject", "resource": DOC + "/../x"}, "resource", "'..'"),
        ({"action": "s3:PutObject", "resource": "arn:aws:s3:::b/${aws:username}"}, "resource", ""),
        ({"action": "s3:PutObject", "resource": "arn:aws:s3:::b/a%2Fb"}, "resource", "percent"),
    ],
)
def test_malformed_aws_operations_are_refused_naming_the_field(
    operation: dict[str, Any], field: str, expected: str
) -> None:
    error = refusal({"operations": [operation]})
    assert error.field == f"intent.operations[0].{field}".rstrip(".")
    assert expected in error.message


def test_repeated_and_missing_operations_are_refused() -> None:
    op = {"action": "s3:PutObject", "resource": DOC}
    assert "repeats" in refusal({"operations": [op, dict(op)]}).message
    assert "at least one" in refusal({"operations": []}).message
    assert "at most 200" in refusal({"operations": [op] * 201}).message


def test_vault_operations() -> None:
    intent = parse(
        {"operations": [{"path": "secret/data/acme/prod/db", "capabilities": ["update", "read"]}]},
        "vault",
    )
    assert intent.operations == (VaultOperation("secret/data/acme/prod/db", ("read", "update")),)
    for capabilities, expected in [(["sudo"], "'sudo'"), (["read", "read"], "repeat"), ([], "")]:
        error = refusal(
            {"operations": [{"path": "secret/data/x", "capabilities": capabilities}]}, "vault"
        )
        assert expected in error.message and error.field == "intent.operations[0].capabilities"
    for path in ["/secret/x", "secret/../x", "secret/a*b", "secret//x", 'secret/"x']:
        error = refusal({"operations": [{"path": path, "capabilities": ["read"]}]}, "vault")
        assert error.field == "intent.operations[0].path", path


def test_database_operations() -> None:
    intent = parse(
        {"operations": [{"object": "billing.invoices", "privileges": ["delete", "SELECT"]}]},
        "database",
    )
    assert intent.operations == (DatabaseOperation("billing.invoices", ("SELECT", "DELETE")),)
    assert (
        "DROP"
        in refusal(
            {"operations": [{"object": "billing.invoices", "privileges": ["DROP"]}]}, "database"
        ).message
    )
    for name in ["invoices", "billing.invoices; DROP TABLE x", 'billing."x"', "a.b.c"]:
        error = refusal({"operations": [{"object": name, "privileges": ["SELECT"]}]}, "database")
        assert error.field == "intent.operations[0].object", name


@pytest.mark.parametrize(
    ("intent", "expected"),
    [
        ({}, "exactly one"),
        ({"operations": [], "terraform_plan": {}}, "exactly one"),
        ({"plan": {}}, "unknown field 'plan'"),
        ([], "must be an object"),
        ("operations", "must be an object"),
        (None, "must be an object"),
    ],
)
def test_the_envelope_holds_exactly_one_form(intent: object, expected: str) -> None:
    assert expected in refusal(intent).message


def test_a_plan_is_for_aws_only() -> None:
    error = refusal({"terraform_plan": fixture("plan_s3_object_update")}, "database")
    assert "aws backend" in error.message


# -- hostile input ---------------------------------------------------------------------------


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    root = value
    for _ in range(levels):
        value["x"] = {}
        value = value["x"]
    return root


def test_deeply_nested_input_is_refused_without_recursion() -> None:
    plan = fixture("plan_s3_object_update")
    plan["configuration"]["x"] = deep(50_000)  # far past Python's recursion limit
    started = time.monotonic()
    error = refusal({"terraform_plan": plan})
    assert f"deeper than {MAX_DEPTH}" in error.message
    assert time.monotonic() - started < 5


def test_huge_input_is_refused_quickly() -> None:
    plan = fixture("plan_s3_object_update")
    plan["planned_values"]["padding"] = [0] * (MAX_NODES * 5)
    started = time.monotonic()
    assert f"more than {MAX_NODES}" in refusal({"terraform_plan": plan}).message
    assert time.monotonic() - started < 5
    plan["planned_values"]["padding"] = ["x" * 1_000_000] * 10
    assert "characters" in refusal({"terraform_plan": plan}).message


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), {1: "x"}, {"x": {1, 2}}, {"x": b"bytes"}]
)
def test_values_json_cannot_hold_are_refused(value: object) -> None:
    plan = fixture("plan_s3_object_update")
    plan["planned_values"]["odd"] = value
    refusal({"terraform_plan": plan})


WRONG_TYPES: list[tuple[str, object]] = [
    ("resource_changes", "all of them"),
    ("resource_changes.0", []),
    ("resource_changes.1.change", []),
    ("resource_changes.1.change.actions", "update"),
    ("resource_changes.1.change.actions", [1]),
    ("resource_changes.1.change.actions", ["explode"]),
    ("resource_changes.1.change.after", "x"),
    ("resource_changes.1.type", None),
    ("resource_changes.1.mode", "ghost"),
    ("configuration", []),
    ("configuration.root_module.resources", {}),
    ("format_version", 1.2),
]


@pytest.mark.parametrize(("path", "value"), WRONG_TYPES)
def test_wrong_types_are_refused_naming_the_field(path: str, value: object) -> None:
    plan = fixture("plan_s3_object_update")
    parent: Any = plan
    steps = path.split(".")
    for step in steps[:-1]:
        parent = parent[int(step)] if step.isdigit() else parent[step]
    last = steps[-1]
    parent[int(last) if last.isdigit() else last] = value
    error = refusal({"terraform_plan": plan})
    assert error.field is not None and error.field.startswith("intent.terraform_plan")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
DOCUMENTS = {
    "terraform_plan": fixture("plan_lambda_with_role"),
    "cloudformation_change_set": fixture("change_set_replace_table"),
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


PATHS = {kind: paths(document)[1:] for kind, document in DOCUMENTS.items()}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_mutation_of_a_real_document_gives_an_intent_or_a_clear_refusal(
    data: st.DataObject,
) -> None:
    kind = data.draw(st.sampled_from(sorted(DOCUMENTS)))
    mutations = data.draw(
        st.lists(st.tuples(st.sampled_from(PATHS[kind]), JSON), min_size=1, max_size=3)
    )
    document = copy.deepcopy(DOCUMENTS[kind])
    for path, value in mutations:
        parent: Any = document
        try:
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed this path
    try:
        intent = parse({kind: document})
    except BrokerError as e:
        assert e.status == 400 and e.message
        return
    for op in intent.operations:
        assert isinstance(op, AwsOperation)
        # Only the broker's own, documented wildcards: none in these documents.
        assert "*" not in op.resource and "?" not in op.resource


@settings(max_examples=200, deadline=None)
@given(JSON, st.sampled_from(["aws", "vault", "database"]))
def test_any_json_as_an_intent_is_an_intent_or_a_clear_refusal(value: Any, backend: str) -> None:
    for candidate in (value, {"operations": value}, {"operations": [value]}):
        try:
            parse(candidate, backend)  # type: ignore[arg-type]
        except BrokerError as e:
            assert e.status == 400 and e.message
