"""A CloudFormation change set (the JSON of DescribeChangeSet) to operations.

The agent's credential only executes the change set: ``cloudformation:ExecuteChangeSet`` on
the stack, limited to this change set's name by the ``cloudformation:ChangeSetName``
condition, and the reads to follow it. CloudFormation then changes the resources with the
stack's service role. Each resource change is listed for approvers with what
CloudFormation will do, and decides the tier: a removal or a replacement needs the delete
rule. The JSON comes from the agent, so before issuing, the broker compares it with the
change set AWS holds (:func:`broker.intent.verify.same_change_set`).
"""

from __future__ import annotations

import re

from broker.intent.errors import UnsupportedResourceType
from broker.intent.fields import Field
from broker.intent.mappings import BY_CLOUDFORMATION
from broker.intent.model import AwsOperation, AwsTarget, Change
from broker.intent.names import check_name

MAX_CHANGES = 2500  # CloudFormation allows 500 resources per stack; leave room, stay bounded
CHANGE_SET_ACTIONS = frozenset({"Add", "Modify", "Remove", "Import", "Dynamic", "SyncWithActual"})
REPLACEMENTS = frozenset({"True", "False", "Conditional"})
_STACK_ID = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):cloudformation:(?P<region>[a-z0-9-]+):(?P<account>\d{12})"
    r":stack/(?P<name>[A-Za-z][A-Za-z0-9-]{0,127})/(?P<id>[A-Za-z0-9-]+)"
)
_CHANGE_SET_ID = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):cloudformation:(?P<region>[a-z0-9-]+):(?P<account>\d{12})"
    r":changeSet/(?P<name>[A-Za-z][A-Za-z0-9-]{0,127})/(?P<id>[A-Za-z0-9-]+)"
)
# What the agent may do with its credential: execute this change set and watch the stack.
WATCH_ACTIONS = (
    "cloudformation:DescribeChangeSet",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStacks",
)

ChangeSetResult = tuple[tuple[AwsOperation, ...], tuple[Change, ...], tuple[tuple[str, str], ...]]


def parse_change_set(field: Field, target: AwsTarget) -> ChangeSetResult:
    """Operations, changes and source facts of a DescribeChangeSet response."""
    stack_field = field.require("StackId")
    stack = _STACK_ID.fullmatch(stack_field.text(512))
    if stack is None:
        raise stack_field.fail("must be a stack ARN (arn:aws:cloudformation:...:stack/name/id)")
    where = (stack["partition"], stack["region"], stack["account"])
    if where != (target.partition, target.region, target.account):
        raise stack_field.fail(
            f"names a stack in account {stack['account']}, {stack['region']}; this request is "
            f"for account {target.account}, {target.region}"
        )
    change_set_field = field.require("ChangeSetId")
    change_set = _CHANGE_SET_ID.fullmatch(change_set_field.text(512))
    if change_set is None or (change_set["region"], change_set["account"]) != where[1:]:
        raise change_set_field.fail(
            "must be the change set's ARN, in the stack's account and region"
        )
    name_field = field.require("ChangeSetName")
    if name_field.text(128) != change_set["name"]:
        raise name_field.fail("must be the name in ChangeSetId")
    if field.get("StackName").present and field.get("StackName").text(128) != stack["name"]:
        raise field.get("StackName").fail("must be the name in StackId")
    _check_ready(field)
    changes = tuple(_change(entry, target) for entry in field.require("Changes").items(MAX_CHANGES))
    if not changes:
        raise field.get("Changes").fail("is empty: the change set changes nothing")
    stack_arn = stack.group(0)
    name = change_set["name"]
    operations = [
        AwsOperation(
            "cloudformation:ExecuteChangeSet",
            stack_arn,
            (("cloudformation:ChangeSetName", name),),
        ),
        *(AwsOperation(action, stack_arn) for action in WATCH_ACTIONS),
    ]
    source = (
        ("stack_id", stack_arn),
        ("change_set_id", change_set.group(0)),
        ("change_set_name", name),
    )
    return tuple(sorted(operations)), changes, source


def _check_ready(field: Field) -> None:
    status = field.require("Status").text(64)
    if status != "CREATE_COMPLETE":
        raise field.get("Status").fail(f"is {status}: only a complete change set can be executed")
    execution = field.require("ExecutionStatus").text(64)
    if execution != "AVAILABLE":
        raise field.get("ExecutionStatus").fail(f"is {execution}, not AVAILABLE")
    if field.get("NextToken").present:
        raise field.get("NextToken").fail(
            "is set: this is one page of the change set; send all of its changes "
            "(the AWS CLI's describe-change-set joins the pages)"
        )
    if field.get("IncludeNestedStacks").boolean(False):
        raise field.get("IncludeNestedStacks").fail(
            "is true: changes inside nested stacks are not mapped"
        )


def _change(entry: Field, target: AwsTarget) -> Change:
    if entry.require("Type").text(32) != "Resource":
        raise entry.get("Type").fail("must be Resource")
    change = entry.require("ResourceChange")
    logical = change.require("LogicalResourceId").text(256)
    problem = check_name(logical)
    if problem:
        raise change.get("LogicalResourceId").fail(problem)
    type_field = change.require("ResourceType")
    resource_type = type_field.text(256)
    action_field = change.require("Action")
    action = action_field.text(32)
    if action not in CHANGE_SET_ACTIONS:
        raise action_field.fail(f"must be one of {', '.join(sorted(CHANGE_SET_ACTIONS))}")
    if action == "Dynamic":
        raise action_field.fail(
            f"is Dynamic for {logical}: CloudFormation cannot say what it will do before it "
            "executes, so no approver can either"
        )
    if change.get("ChangeSetId").present:
        raise change.get("ChangeSetId").fail("names a nested change set, which is not mapped")
    rtype = BY_CLOUDFORMATION.get(resource_type)
    if rtype is None:
        raise UnsupportedResourceType(
            f"{logical}: resource type {resource_type} is not one intents map "
            f"(supported: {', '.join(sorted(BY_CLOUDFORMATION))})",
            type_field.path,
            resource_type,
            logical,
        )
    if resource_type == "AWS::CloudFormation::Stack" and action != "Remove":
        raise action_field.fail(
            f"is {action} for nested stack {logical}: its own changes are not in this change "
            "set, so no approver could read them"
        )
    replacement = change.get("Replacement").optional_text(16)
    if replacement is not None and replacement not in REPLACEMENTS:
        raise change.get("Replacement").fail("must be True, False or Conditional")
    policy = change.get("PolicyAction").optional_text(32)
    actions = _actions(action, replacement, policy)
    physical = change.get("PhysicalResourceId").optional_text(2048)
    if physical is not None and (problem := check_name(physical)):
        raise change.get("PhysicalResourceId").fail(problem)
    identifier = physical or ""
    operations: tuple[AwsOperation, ...] = ()
    identity = rtype.physical_identity(physical) if physical and rtype.physical_identity else None
    if identity is not None:
        identifier = rtype.arn(identity, target)
        effects: list[str] = []
        if "delete" in actions:
            effects += rtype.delete
        if "create" in actions:
            effects += rtype.create
        if "update" in actions:
            effects += rtype.update or ()
        operations = tuple(sorted({AwsOperation(a, identifier) for a in effects}))
    return Change(
        address=logical,
        resource_type=resource_type,
        actions=actions,
        identifier=identifier,
        conditional=replacement == "Conditional",
        executed_by="cloudformation",
        operations=operations,
    )


def _actions(action: str, replacement: str | None, policy: str | None) -> tuple[str, ...]:
    """A change set's words in Terraform's: a replacement creates the new, then deletes."""
    if action == "Add":
        return ("create",)
    if action == "Import":
        return ("import",)
    if action == "Remove":
        # DeletionPolicy Retain: the resource leaves the stack and is kept.
        return ("forget",) if policy == "Retain" else ("delete",)
    if replacement in ("True", "Conditional"):
        return ("create", "delete")
    return ("update",)
