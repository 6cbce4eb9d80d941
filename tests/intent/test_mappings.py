"""Each mapped resource type's changes, one small plan at a time (Terraform JSON format 1.2)."""

from __future__ import annotations

from typing import Any

import pytest

from broker.intent.classify import describe, destructions
from broker.intent.errors import InvalidIntent
from broker.intent.model import AwsOperation, AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import iam_database

ACCOUNT, REGION = "111111111111", "us-east-1"
RDS = f"arn:aws:rds:{REGION}:{ACCOUNT}"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/app-runner"
KEY = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"


def plan(
    rtype: str,
    actions: list[str],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    unknown: dict[str, Any] | None = None,
    configured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A plan with one resource change, as ``terraform show -json`` writes it."""
    expressions = {name: {"constant_value": value} for name, value in (after or {}).items()}
    expressions.update(configured or {})
    return {
        "format_version": "1.2",
        "terraform_version": "1.9.5",
        "resource_changes": [
            {
                "address": f"{rtype}.this",
                "mode": "managed",
                "type": rtype,
                "name": "this",
                "provider_name": "registry.terraform.io/hashicorp/aws",
                "change": {
                    "actions": actions,
                    "before": before,
                    "after": after,
                    "after_unknown": unknown or {},
                    "before_sensitive": {},
                    "after_sensitive": {},
                },
            }
        ],
        "configuration": {
            "provider_config": {"aws": {"name": "aws", "expressions": {}}},
            "root_module": {
                "resources": [
                    {
                        "address": f"{rtype}.this",
                        "mode": "managed",
                        "type": rtype,
                        "name": "this",
                        "provider_config_key": "aws",
                        "expressions": expressions,
                    }
                ]
            },
        },
        "applyable": True,
        "errored": False,
    }


def intent(document: dict[str, Any]) -> Intent:
    return parse_intent(
        {"terraform_plan": document}, "aws", iam_database(), AwsTarget(ACCOUNT, REGION)
    )


def refused(document: dict[str, Any]) -> str:
    with pytest.raises(InvalidIntent) as caught:
        intent(document)
    return caught.value.message


def ops(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (op.action, op.resource)
        for op in intent(document).operations
        if isinstance(op, AwsOperation)
    }


def test_an_rds_instance_names_its_groups_role_and_key() -> None:
    after = {
        "identifier": "ledger-db",
        "db_subnet_group_name": "private",
        "monitoring_role_arn": ROLE,
        "kms_key_id": KEY,
        "tags": {"team": "ledger"},
    }
    found = ops(
        plan(
            "aws_db_instance",
            ["create"],
            None,
            after,
            unknown={"parameter_group_name": True, "option_group_name": True},
        )
    )
    assert ("rds:CreateDBInstance", f"{RDS}:db:ledger-db") in found
    assert ("rds:CreateDBInstance", f"{RDS}:subgrp:private") in found
    assert ("rds:AddTagsToResource", f"{RDS}:db:ledger-db") in found
    assert ("iam:PassRole", ROLE) in found
    assert ("kms:CreateGrant", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{KEY}") in found
    # AWS picks the parameter and option groups: not in the request, nothing to grant.
    assert not any(":pg:" in r or ":og:" in r for _, r in found)


def test_a_configured_group_unknown_until_apply_is_refused() -> None:
    document = plan(
        "aws_db_instance",
        ["create"],
        None,
        {"identifier": "ledger-db"},
        unknown={"parameter_group_name": True},
        configured={"parameter_group_name": {"references": ["var.group"]}},
    )
    assert "parameter_group_name is not known until apply" in refused(document)


def test_deleting_an_rds_instance_takes_its_final_snapshot() -> None:
    before = {
        "identifier": "ledger-db",
        "skip_final_snapshot": False,
        "final_snapshot_identifier": "ledger-final",
    }
    document = plan("aws_db_instance", ["delete"], before, None)
    found = ops(document)
    assert ("rds:DeleteDBInstance", f"{RDS}:db:ledger-db") in found
    assert ("rds:CreateDBSnapshot", f"{RDS}:snapshot:ledger-final") in found
    assert describe(intent(document))[0] == "DELETES aws_db_instance.this: its data will be lost"


def test_every_rds_update_is_destructive_by_the_broker_s_rule() -> None:
    before = {"identifier": "ledger-db", "allocated_storage": 20}
    document = plan("aws_db_instance", ["update"], before, {**before, "allocated_storage": 40})
    reasons = [d.reason for d in destructions(intent(document))]
    assert reasons == ["can turn off deletion protection and drop backups"]


def test_a_stack_named_before_it_exists_and_after() -> None:
    after = {
        "name": "acme-prod-app",
        "iam_role_arn": ROLE,
        "template_url": "https://acme-templates.s3.us-east-1.amazonaws.com/app/v2.yaml",
    }
    found = ops(plan("aws_cloudformation_stack", ["create"], None, after, unknown={"id": True}))
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/acme-prod-app/*"
    assert ("cloudformation:CreateStack", stack) in found
    assert ("iam:PassRole", ROLE) in found
    assert ("s3:GetObject", "arn:aws:s3:::acme-templates/app/v2.yaml") in found
    stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/acme-prod-app/1234-abcd"
    before = {**after, "id": stack_id, "policy_body": ""}
    updated = {**before, "policy_body": "{}"}
    found = ops(plan("aws_cloudformation_stack", ["update"], before, updated))
    assert ("cloudformation:SetStackPolicy", stack_id) in found
    assert ("cloudformation:UpdateStack", stack_id) in found


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ({"name": "acme-prod-app"}, "iam_role_arn is not set"),
        (
            {"name": "a", "iam_role_arn": ROLE, "template_url": "http://example.com/t.yaml"},
            "not an https URL of an S3 object",
        ),
        ({"name": "a", "iam_role_arn": "not-a-role"}, "not an IAM role ARN"),
    ],
)
def test_stacks_refused(after: dict[str, Any], expected: str) -> None:
    assert expected in refused(plan("aws_cloudformation_stack", ["create"], None, after))


def test_a_lambda_function_s_layers_and_refusals() -> None:
    layer = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:common:3"
    after = {"function_name": "worker", "role": ROLE, "layers": [layer], "publish": True}
    found = ops(plan("aws_lambda_function", ["create"], None, after))
    assert ("lambda:GetLayerVersion", layer) in found
    assert ("lambda:PublishVersion", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:worker") in found
    in_vpc = {**after, "vpc_config": [{"subnet_ids": ["subnet-1"], "security_group_ids": []}]}
    assert "ec2:Describe*" in refused(plan("aws_lambda_function", ["create"], None, in_vpc))
    aliased = {**after, "kms_key_arn": "alias/app"}
    assert "an alias names no key" in refused(
        plan("aws_lambda_function", ["create"], None, aliased)
    )


def test_a_lambda_update_maps_each_attribute() -> None:
    before = {
        "function_name": "worker",
        "role": ROLE,
        "s3_bucket": "b",
        "s3_key": "v1.zip",
        "memory_size": 128,
        "reserved_concurrent_executions": 5,
    }
    after = {**before, "s3_key": "v2.zip", "reserved_concurrent_executions": -1}
    actions = {a for a, _ in ops(plan("aws_lambda_function", ["update"], before, after))}
    assert {"lambda:UpdateFunctionCode", "lambda:DeleteFunctionConcurrency"} <= actions
    assert "lambda:UpdateFunctionConfiguration" not in actions
    assert "s3:GetObject" in actions  # the new code is read from S3


def test_an_iam_policy_update_may_delete_its_oldest_version() -> None:
    before = {"name": "deploy", "path": "/team/", "policy": "{}"}
    document = plan("aws_iam_policy", ["update"], before, {**before, "policy": '{"a":1}'})
    arn = f"arn:aws:iam::{ACCOUNT}:policy/team/deploy"
    assert ("iam:CreatePolicyVersion", arn) in ops(document)
    assert [d.subject for d in destructions(intent(document))] == [
        f"iam:DeletePolicyVersion on {arn}"
    ]


def test_removing_a_permissions_boundary_uses_its_delete_action() -> None:
    before = {"name": "app", "path": "/", "permissions_boundary": ROLE}
    document = plan("aws_iam_role", ["update"], before, {**before, "permissions_boundary": None})
    actions = {a for a, _ in ops(document)}
    assert "iam:DeleteRolePermissionsBoundary" in actions
    assert "iam:PutRolePermissionsBoundary" not in actions


@pytest.mark.parametrize(
    ("rtype", "after", "created"),
    [
        ("aws_sqs_queue", {"name": "events", "tags": {"a": "b"}}, "sqs:TagQueue"),
        (
            "aws_sns_topic",
            {"name": "alerts", "lambda_success_feedback_role_arn": ROLE},
            "iam:PassRole",
        ),
        (
            "aws_dynamodb_table",
            {"name": "t", "ttl": [{"enabled": True, "attribute_name": "x"}]},
            "dynamodb:UpdateTimeToLive",
        ),
    ],
)
def test_attributes_set_at_creation_ask_for_their_actions(
    rtype: str, after: dict[str, Any], created: str
) -> None:
    assert created in {a for a, _ in ops(plan(rtype, ["create"], None, after))}


def test_forgetting_and_importing() -> None:
    table = {"name": "t"}
    document = plan("aws_sqs_queue", ["create"], None, {"name": "events"})
    forgotten = plan("aws_dynamodb_table", ["forget"], table, None)["resource_changes"][0]
    document["resource_changes"].append(forgotten)
    assert describe(intent(document))[:2] == [
        "FORGETS aws_dynamodb_table.this: it stays, no longer managed",
        "CREATES aws_sqs_queue.this (aws_sqs_queue)",
    ]
    assert "nothing to grant" in refused(plan("aws_dynamodb_table", ["forget"], table, None))
    imported = plan("aws_dynamodb_table", ["no-op"], table, table)
    imported["resource_changes"][0]["change"]["importing"] = {"id": "t"}
    actions = {a for a, _ in ops(imported)}
    assert actions == {
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:DescribeTimeToLive",
        "dynamodb:ListTagsOfResource",
    }


def test_a_refused_attribute_on_update_and_a_replica() -> None:
    before = {"name": "t", "replica": []}
    after = {"name": "t", "replica": [{"region_name": "eu-west-1"}]}
    assert "spans regions" in refused(plan("aws_dynamodb_table", ["update"], before, after))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("", "is empty"), ("x" * 1100, "longer than"), ("a\tb", "control characters")],
)
def test_names_that_cannot_be_in_an_arn(name: str, expected: str) -> None:
    assert expected in refused(plan("aws_sqs_queue", ["create"], None, {"name": name}))
