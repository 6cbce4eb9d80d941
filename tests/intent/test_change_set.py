"""CloudFormation change sets (DescribeChangeSet's JSON) to operations and changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.intent.classify import describe, summarize
from broker.intent.compile import session_policy
from broker.intent.errors import InvalidIntent, UnsupportedResourceType
from broker.intent.model import AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.intent.scope import check_scope
from broker.policy.iam_actions import iam_database
from broker.scopes.registry import load_scope_set
from tests.intent.support import ACCOUNT, REGION, fixture
from tests.scopes.factory import lint_context

TARGET = AwsTarget(ACCOUNT, REGION)
STACK = (
    "arn:aws:cloudformation:us-east-1:111111111111:stack/acme-prod-ledger/"
    "0b9d8e70-1a2b-11ef-9c3d-0a1b2c3d4e5f"
)


def change_set_intent(data: dict[str, Any]) -> Intent:
    return parse_intent({"cloudformation_change_set": data}, "aws", iam_database(), TARGET)


def refusal(data: dict[str, Any]) -> InvalidIntent:
    with pytest.raises(InvalidIntent) as caught:
        change_set_intent(data)
    return caught.value


def test_the_credential_executes_this_change_set_only() -> None:
    intent = change_set_intent(fixture("change_set_replace_table"))
    policy = session_policy(intent, REGION)
    execute = next(
        s for s in policy["Statement"] if "cloudformation:ExecuteChangeSet" in s["Action"]
    )
    assert execute["Action"] == ["cloudformation:ExecuteChangeSet"]
    assert execute["Resource"] == [STACK]
    assert execute["Condition"]["StringEquals"]["cloudformation:ChangeSetName"] == "ledger-rekey"
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(a.startswith("cloudformation:") for a in actions)
    assert not any("Delete" in a for a in actions)


def test_a_replacement_is_named_first_and_needs_the_delete_rule() -> None:
    intent = change_set_intent(fixture("change_set_replace_table"))
    assert summarize(intent).replacements == ("LedgerTable",)
    assert summarize(intent).destructive == 1
    lines = describe(intent)
    assert lines[0] == "REPLACES LedgerTable: its data will be lost"
    assert lines[1:3] == [
        "CREATES AlertsTopic (AWS::SNS::Topic)",
        "UPDATES EventsQueue (AWS::SQS::Queue)",
    ]
    table = next(c for c in intent.changes if c.address == "LedgerTable")
    assert table.identifier == "arn:aws:dynamodb:us-east-1:111111111111:table/acme-prod-ledger"
    assert table.executed_by == "cloudformation"
    # The repository's deploy scope lets agents execute change sets on acme-prod-* stacks.
    deploy = load_scope_set(Path(__file__).parents[2] / "scopes", lint_context())
    scope = deploy.scope_set.scopes["deploy"]
    check = check_scope(intent, scope, scope.environments["prod"], REGION, iam_database())
    assert check.raise_if_outside() == "delete"


def test_a_conditional_replacement_is_a_replacement() -> None:
    data = fixture("change_set_replace_table")
    data["Changes"][0]["ResourceChange"]["Replacement"] = "Conditional"
    intent = change_set_intent(data)
    assert summarize(intent).replacements == ("LedgerTable",)
    assert describe(intent)[0].startswith("REPLACES LedgerTable (if CloudFormation must")


def test_a_removal_retained_by_its_deletion_policy_destroys_nothing() -> None:
    data = fixture("change_set_replace_table")
    change = data["Changes"][0]["ResourceChange"]
    change.update(Action="Remove", PolicyAction="Retain")
    del change["Replacement"]
    intent = change_set_intent(data)
    assert summarize(intent).destructive == 0
    change["PolicyAction"] = "Delete"
    assert summarize(change_set_intent(data)).destructive == 1


def test_an_unsupported_resource_type_is_refused_by_name() -> None:
    data = fixture("change_set_replace_table")
    data["Changes"][2]["ResourceChange"]["ResourceType"] = "AWS::EC2::Instance"
    with pytest.raises(UnsupportedResourceType) as caught:
        change_set_intent(data)
    assert caught.value.resource_type == "AWS::EC2::Instance"
    assert caught.value.address == "AlertsTopic"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["Changes"][0]["ResourceChange"].update(Action="Dynamic"), "Dynamic"),
        (lambda d: d.update(Status="CREATE_PENDING"), "complete"),
        (lambda d: d.update(ExecutionStatus="EXECUTE_COMPLETE"), "AVAILABLE"),
        (lambda d: d.update(NextToken="abc"), "one page"),
        (lambda d: d.update(IncludeNestedStacks=True), "nested"),
        (
            lambda d: d.update(StackId=d["StackId"].replace("111111111111", "222222222222")),
            "account",
        ),
        (lambda d: d.update(ChangeSetName="other"), "ChangeSetId"),
        (lambda d: d.update(Changes=[]), "changes nothing"),
        (lambda d: d["Changes"][0].update(Type="Hook"), "Resource"),
        (
            lambda d: d["Changes"][0]["ResourceChange"].update(
                ResourceType="AWS::CloudFormation::Stack", Replacement="False"
            ),
            "nested stack",
        ),
        (
            lambda d: d["Changes"][0]["ResourceChange"].update(PhysicalResourceId="ledger-*"),
            "wildcard",
        ),
    ],
)
def test_change_sets_that_cannot_be_read_or_executed_are_refused(edit: Any, expected: str) -> None:
    data = fixture("change_set_replace_table")
    edit(data)
    assert expected in refusal(data).message


def test_a_change_set_is_for_the_aws_backend_only() -> None:
    with pytest.raises(InvalidIntent, match="aws backend"):
        parse_intent(
            {"cloudformation_change_set": fixture("change_set_replace_table")},
            "vault",
            iam_database(),
            TARGET,
        )


def test_the_order_of_changes_does_not_change_the_hash() -> None:
    data = fixture("change_set_replace_table")
    first = change_set_intent(data)
    data["Changes"].reverse()
    assert change_set_intent(data).sha256 == first.sha256
