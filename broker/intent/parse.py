"""Read the ``intent`` of a credential request: exactly one of three forms, strictly.

``{"operations": [...]}`` written by hand (AWS actions on ARNs, Vault capabilities on
paths, or database privileges on tables, as the request's backend says),
``{"terraform_plan": <terraform show -json>}`` or ``{"cloudformation_change_set":
<DescribeChangeSet>}`` (both AWS). The result is an :class:`Intent`: its operations are
exactly what the grant will hold; nothing is checked against a scope here
(:func:`broker.intent.scope.check_scope` does that).
"""

from __future__ import annotations

from broker.intent.cloudformation import parse_change_set
from broker.intent.errors import InvalidIntent
from broker.intent.fields import Field, check_bounds
from broker.intent.model import INTENT_KINDS, AwsTarget, Intent
from broker.intent.operations import parse_operations
from broker.intent.terraform import parse_terraform_plan
from broker.policy.iam_actions import IamDatabase
from broker.scopes.model import Backend

MAX_DERIVED_OPERATIONS = 1000


def parse_intent(
    value: object, backend: Backend, iam: IamDatabase, target: AwsTarget | None = None
) -> Intent:
    """The intent of a request for ``backend``; ``target`` (account, region) for AWS.

    Raises :class:`InvalidIntent` (400) naming the field at fault, or
    :class:`UnsupportedResourceType` naming a resource type the broker cannot map.
    """
    check_bounds(value, "intent")
    field = Field(value, "intent")
    present = [kind for kind in INTENT_KINDS if kind in field.obj()]
    field.only(frozenset(INTENT_KINDS))
    if len(present) != 1:
        raise field.fail(f"must hold exactly one of {', '.join(INTENT_KINDS)}")
    kind = present[0]
    body = field.get(kind)
    if kind == "operations":
        return Intent(kind, backend, parse_operations(body, backend, iam))
    if backend != "aws":
        raise body.fail(f"is for the aws backend; this request is for {backend}")
    if target is None:
        raise body.fail("needs an environment with an AWS account")
    if kind == "terraform_plan":
        operations, changes, source = parse_terraform_plan(body, target)
    else:
        operations, changes, source = parse_change_set(body, target)
    if len(operations) > MAX_DERIVED_OPERATIONS:
        raise InvalidIntent(
            f"{body.path} needs {len(operations)} operations; at most "
            f"{MAX_DERIVED_OPERATIONS} fit one grant: split the change",
            body.path,
        )
    # Sorted, so the hash does not depend on the order a tool listed them in.
    ordered = tuple(sorted(changes, key=lambda c: (c.address, c.resource_type)))
    return Intent(kind, backend, operations, ordered, tuple(sorted(source)))
