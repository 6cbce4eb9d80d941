"""Terraform plans (JSON format 1.2, as ``terraform show -json`` writes it) to operations."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from broker.intent.classify import describe, summarize
from broker.intent.compile import session_policy
from broker.intent.errors import InvalidIntent, UnsupportedResourceType
from broker.intent.model import AwsOperation, AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.intent.scope import check_scope
from broker.policy.iam_actions import iam_database
from tests.intent.support import ACCOUNT, DOC, REGION, TABLE, acme, fixture, resource_change

TARGET = AwsTarget(ACCOUNT, REGION)


def plan_intent(plan: dict[str, Any]) -> Intent:
    return parse_intent({"terraform_plan": plan}, "aws", iam_database(), TARGET)


def refusal(plan: dict[str, Any]) -> InvalidIntent:
    with pytest.raises(InvalidIntent) as caught:
        plan_intent(plan)
    return caught.value


def test_a_plan_updating_one_object_grants_that_object_and_nothing_else() -> None:
    intent = plan_intent(fixture("plan_s3_object_update"))
    assert set(intent.operations) == {
        AwsOperation("s3:PutObject", DOC),
        AwsOperation("s3:GetObject", DOC),
        AwsOperation("s3:GetObjectTagging", DOC),
    }
    policy = session_policy(intent, REGION)
    assert [s["Resource"] for s in policy["Statement"]] == [[DOC]]
    assert "*" not in json.dumps(policy)
    check = check_scope(intent, acme(), acme().environments["prod"], REGION, iam_database())
    assert check.raise_if_outside() == "write"
    assert summarize(intent).as_dict() == {
        "sha256": intent.sha256,
        "operations": 3,
        "destructive": 0,
        "replacements": [],
    }


@pytest.mark.parametrize("order", [["delete", "create"], ["create", "delete"]])
def test_a_plan_replacing_a_table_is_a_replacement_and_needs_the_delete_rule(
    order: list[str],
) -> None:
    plan = fixture("plan_dynamodb_replace")
    resource_change(plan, "aws_dynamodb_table.ledger")["change"]["actions"] = order
    intent = plan_intent(plan)
    summary = summarize(intent)
    assert summary.replacements == ("aws_dynamodb_table.ledger",)
    assert summary.destructive == 1
    assert describe(intent)[0] == "REPLACES aws_dynamodb_table.ledger: its data will be lost"
    assert AwsOperation("dynamodb:DeleteTable", TABLE) in intent.operations
    assert AwsOperation("dynamodb:CreateTable", TABLE) in intent.operations
    check = check_scope(intent, acme(), acme().environments["prod"], REGION, iam_database())
    assert check.raise_if_outside() == "delete"


def test_an_unsupported_resource_type_is_refused_by_name() -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_object.invoice_template")
    change["type"] = "aws_instance"
    change["address"] = "aws_instance.web"
    with pytest.raises(UnsupportedResourceType) as caught:
        plan_intent(plan)
    assert caught.value.resource_type == "aws_instance"
    assert caught.value.address == "aws_instance.web"
    assert caught.value.code == "unsupported_resource_type"
    assert "aws_instance.web" in caught.value.message
    assert caught.value.body()["resource_type"] == "aws_instance"


def test_a_resource_of_another_provider_is_refused_by_name() -> None:
    plan = fixture("plan_s3_object_update")
    resource_change(plan, "aws_s3_object.invoice_template")["provider_name"] = (
        "registry.terraform.io/hashicorp/google"
    )
    with pytest.raises(UnsupportedResourceType, match="hashicorp/google"):
        plan_intent(plan)


@pytest.mark.parametrize("key", ["templates/*", "templates/invoice?.html", "${aws:username}/x"])
def test_a_plan_with_a_wildcard_is_refused_naming_the_resource(key: str) -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_object.invoice_template")["change"]
    change["before"]["key"] = change["after"]["key"] = key
    error = refusal(plan)
    assert "aws_s3_object.invoice_template" in error.message
    assert "key" in error.message
    assert error.field == "intent.terraform_plan.resource_changes[1].change"


def test_a_name_unknown_until_apply_is_refused() -> None:
    plan = fixture("plan_dynamodb_replace")
    change = resource_change(plan, "aws_dynamodb_table.ledger")["change"]
    del change["after"]["name"]
    change["after_unknown"]["name"] = True
    error = refusal(plan)
    assert "aws_dynamodb_table.ledger: name is not known until apply" in error.message


def test_an_unknown_name_is_resolved_through_a_reference_to_the_plan() -> None:
    intent = plan_intent(fixture("plan_lambda_with_role"))
    role = f"arn:aws:iam::{ACCOUNT}:role/service/acme-prod-worker"
    assert AwsOperation("iam:PassRole", role) in intent.operations
    assert AwsOperation("iam:CreateRole", role) in intent.operations
    code = "arn:aws:s3:::acme-prod-artifacts/worker/1.4.0.zip"
    assert AwsOperation("s3:GetObject", code) in intent.operations
    # Computed attributes the configuration does not set are not asked for.
    assert not any(op.action == "iam:PutRolePolicy" for op in intent.operations)
    # random_id never calls AWS: it is listed, with nothing to grant.
    random = [c for c in intent.changes if c.address == "random_id.suffix"]
    assert random and random[0].operations == ()
    policy = session_policy(intent, REGION)
    iam_statement = next(s for s in policy["Statement"] if s["Action"][0].startswith("iam:"))
    assert "Condition" not in iam_statement  # IAM is global: a region condition would deny it


def test_an_unresolvable_reference_is_refused() -> None:
    plan = fixture("plan_lambda_with_role")
    config = plan["configuration"]["root_module"]["resources"][1]
    config["expressions"]["role"] = {"references": ["var.role_arn"]}
    assert "aws_lambda_function.worker: role is not known until apply" in refusal(plan).message


def test_a_resource_in_another_region_is_refused() -> None:
    plan = fixture("plan_s3_object_update")
    plan["configuration"]["provider_config"]["aws"]["expressions"]["region"] = {
        "constant_value": "eu-west-1"
    }
    assert "in region eu-west-1" in refusal(plan).message


def test_an_arn_of_another_account_is_refused() -> None:
    plan = fixture("plan_dynamodb_replace")
    change = resource_change(plan, "aws_dynamodb_table.ledger")["change"]
    change["before"]["arn"] = "arn:aws:dynamodb:us-east-1:999999999999:table/acme-prod-ledger"
    assert "999999999999" in refusal(plan).message


def test_a_sensitive_name_is_refused() -> None:
    plan = fixture("plan_dynamodb_replace")
    resource_change(plan, "aws_dynamodb_table.ledger")["change"]["before_sensitive"]["name"] = True
    assert "sensitive" in refusal(plan).message


def test_a_data_source_read_during_apply_is_refused() -> None:
    plan = fixture("plan_s3_object_update")
    plan["resource_changes"].append(
        {
            "address": "data.aws_caller_identity.me",
            "mode": "data",
            "type": "aws_caller_identity",
            "name": "me",
            "provider_name": "registry.terraform.io/hashicorp/aws",
            "change": {"actions": ["read"], "before": None, "after": {}, "after_unknown": {}},
            "action_reason": "read_because_config_unknown",
        }
    )
    assert "data.aws_caller_identity.me is a data source" in refusal(plan).message


@pytest.mark.parametrize(
    ("member", "value", "expected"),
    [
        ("format_version", "2.0", "format 1.x"),
        ("errored", True, "errored"),
        ("applyable", False, "applyable"),
        ("resource_changes", [], "changes no AWS resource"),
    ],
)
def test_plans_that_cannot_be_applied_are_refused(
    member: str, value: object, expected: str
) -> None:
    plan = fixture("plan_s3_object_update")
    plan[member] = value
    assert expected in refusal(plan).message


def test_an_unmapped_attribute_change_is_refused_by_name() -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_bucket.docs")["change"]
    change["actions"] = ["update"]
    change["after"]["acceleration_status"] = "Enabled"
    error = refusal(plan)
    assert "aws_s3_bucket.docs: acceleration_status" in error.message


def test_tags_only_update_asks_for_tagging_only() -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_object.invoice_template")["change"]
    change["after"] = {**change["before"], "tags": {"team": "billing"}}
    change["after"]["tags_all"] = {"team": "billing"}
    change["after_unknown"] = {}
    actions = {op.action for op in plan_intent(plan).operations}
    assert actions == {"s3:PutObjectTagging", "s3:GetObject", "s3:GetObjectTagging"}


def test_force_destroy_of_a_bucket_names_its_objects() -> None:
    plan = fixture("plan_s3_object_update")
    change = resource_change(plan, "aws_s3_bucket.docs")["change"]
    change["actions"] = ["delete"]
    change["before"]["force_destroy"] = True
    change["after"] = None
    intent = plan_intent(plan)
    assert AwsOperation("s3:DeleteObject", "arn:aws:s3:::acme-prod-docs/*") in intent.operations
    assert AwsOperation("s3:DeleteBucket", "arn:aws:s3:::acme-prod-docs") in intent.operations
    assert describe(intent)[0] == "DELETES aws_s3_bucket.docs: its data will be lost"


def test_the_hash_covers_what_is_granted_not_the_plan_text() -> None:
    plan = fixture("plan_s3_object_update")
    first = plan_intent(plan)
    assert "Invoice v2" not in first.canonical_json  # attribute values stay out
    reordered = json.loads(json.dumps(plan, sort_keys=True))
    reordered["timestamp"] = "2030-01-01T00:00:00Z"
    assert plan_intent(reordered).sha256 == first.sha256
    other = copy.deepcopy(plan)
    change = resource_change(other, "aws_s3_object.invoice_template")["change"]
    change["before"]["key"] = change["after"]["key"] = "templates/receipt.html"
    assert plan_intent(other).sha256 != first.sha256


def test_a_bucket_and_its_object_created_together() -> None:
    plan = fixture("plan_s3_object_update")
    bucket = resource_change(plan, "aws_s3_bucket.docs")["change"]
    bucket.update(actions=["create"], before=None, after_unknown={"arn": True, "id": True})
    del bucket["after"]["arn"]
    obj = resource_change(plan, "aws_s3_object.invoice_template")["change"]
    obj.update(actions=["create"], before=None)
    del obj["after"]["bucket"]
    obj["after_unknown"]["bucket"] = True  # aws_s3_bucket.docs.id, known only after apply
    intent = plan_intent(plan)
    assert AwsOperation("s3:CreateBucket", "arn:aws:s3:::acme-prod-docs") in intent.operations
    assert AwsOperation("s3:PutObject", DOC) in intent.operations


def test_resources_inside_modules_resolve_within_their_module() -> None:
    plan = fixture("plan_s3_object_update")
    for change in plan["resource_changes"]:
        change["address"] = f"module.docs[0].{change['address']}"
        change["module_address"] = "module.docs[0]"
    obj = resource_change(plan, "module.docs[0].aws_s3_object.invoice_template")["change"]
    del obj["after"]["bucket"]
    obj["after_unknown"]["bucket"] = True
    root = plan["configuration"]["root_module"]
    plan["configuration"]["root_module"] = {
        "module_calls": {"docs": {"source": "./docs", "module": root}}
    }
    intent = plan_intent(plan)
    assert AwsOperation("s3:PutObject", DOC) in intent.operations
    assert intent.changes[0].address == "module.docs[0].aws_s3_object.invoice_template"
