"""Every operation within a scope tier, each one outside named; the tier follows the intent."""

from __future__ import annotations

from typing import Any

import pytest

from broker.intent.errors import IntentOutsideScope
from broker.intent.model import AwsTarget
from broker.intent.parse import parse_intent
from broker.intent.scope import ScopeCheck, check_scope
from broker.policy.iam_actions import iam_database
from broker.scopes.model import Backend
from tests.intent.support import ACCOUNT, DOC, REGION, TABLE, acme, acme_data, scope_from

TARGET = AwsTarget(ACCOUNT, REGION)


def check(operations: list[dict[str, Any]], backend: Backend = "aws", **kwargs: Any) -> ScopeCheck:
    intent = parse_intent({"operations": operations}, backend, iam_database(), TARGET)
    scope = kwargs.get("scope", acme())
    region = kwargs.get("region", REGION if backend == "aws" else None)
    return check_scope(intent, scope, scope.environments["prod"], region, iam_database())


def aws(action: str, resource: str) -> dict[str, Any]:
    return {"action": action, "resource": resource}


@pytest.mark.parametrize(
    ("action", "resource", "tier"),
    [
        ("s3:GetObject", DOC, "read"),
        ("s3:PutObject", DOC, "write"),
        ("s3:DeleteObject", DOC, "delete"),
        ("dynamodb:DescribeTable", TABLE, "read"),
        ("dynamodb:UpdateTable", TABLE, "write"),
        ("dynamodb:DeleteTable", TABLE, "delete"),
        # a prefix the scope's pattern covers: allowed, it widens nothing
        ("s3:DeleteObject", "arn:aws:s3:::acme-prod-docs/tmp/*", "delete"),
    ],
)
def test_the_tier_follows_from_the_operation(action: str, resource: str, tier: str) -> None:
    assert check([aws(action, resource)]).raise_if_outside() == tier


def test_the_highest_need_decides() -> None:
    result = check([aws("s3:GetObject", DOC), aws("dynamodb:DeleteTable", TABLE)])
    assert result.raise_if_outside() == "delete"
    assert dict((str(op), tier) for op, tier in result.needs) == {
        f"s3:GetObject on {DOC}": "read",
        f"dynamodb:DeleteTable on {TABLE}": "delete",
    }


def test_every_operation_outside_is_named() -> None:
    other_table = TABLE.replace("acme-prod-ledger", "payments-ledger")
    result = check(
        [
            aws("s3:PutObject", DOC),
            aws("dynamodb:DeleteTable", other_table),
            aws("dynamodb:DeleteTable", TABLE.replace("us-east-1", "eu-central-1")),
            aws("dynamodb:DeleteTable", TABLE.replace(ACCOUNT, "999999999999")),
            aws("s3:PutObject", "arn:aws:s3:::acme-prod-*/x"),  # the scope would have to widen
            aws("sqs:DeleteQueue", "arn:aws:sqs:us-east-1:111111111111:q"),
        ]
    )
    assert not result.allowed
    reasons = {o.operation.resource: o.reason for o in result.outside}
    assert len(reasons) == 5 and DOC not in reasons
    assert "no tier of scope acme grants it" in reasons[other_table]
    assert "region eu-central-1" in reasons[TABLE.replace("us-east-1", "eu-central-1")]
    assert "account 999999999999" in reasons[TABLE.replace(ACCOUNT, "999999999999")]
    with pytest.raises(IntentOutsideScope) as caught:
        result.raise_if_outside()
    assert caught.value.code == "intent_outside_scope" and caught.value.status == 400
    body = caught.value.body()
    assert body["field"] == "intent"
    named = body["operations"]
    assert isinstance(named, list) and len(named) == 5
    assert {"action", "resource", "reason"} <= set(named[0])


def test_a_destructive_operation_needs_a_delete_tier_even_if_listed_lower() -> None:
    data = acme_data()
    del data["tiers"]["delete"]
    data["tiers"]["write"]["aws"][0]["actions"].append("s3:DeleteObject")
    result = check([aws("s3:DeleteObject", DOC)], scope=scope_from(data))
    assert [o.reason for o in result.outside] == [
        "needs tier delete, which scope acme does not define here"
    ]


def test_an_operation_naming_everything_is_refused_beyond_read() -> None:
    data = acme_data()
    data["tiers"]["delete"]["aws"][1]["resources"].append(
        "arn:aws:dynamodb:${region}:${account}:table/*"
    )
    result = check(
        [aws("dynamodb:DeleteTable", TABLE[: TABLE.index("/") + 1] + "*")], scope=scope_from(data)
    )
    assert "names every resource" in result.outside[0].reason


@pytest.mark.parametrize(
    ("path", "capabilities", "tier"),
    [
        ("secret/data/acme/prod/db", ["read"], "read"),
        ("secret/metadata/acme/prod/db", ["list"], "read"),
        ("secret/data/acme/prod/db", ["update"], "write"),
        ("secret/data/acme/prod/db", ["delete"], "delete"),
        ("secret/destroy/acme/prod/db", ["update"], "delete"),
        ("secret/data/acme/prod/+", ["read"], "read"),
    ],
)
def test_vault_tiers(path: str, capabilities: list[str], tier: str) -> None:
    operation = {"path": path, "capabilities": capabilities}
    assert check([operation], "vault").raise_if_outside() == tier


@pytest.mark.parametrize(
    ("path", "capabilities", "reason"),
    [
        ("kv/data/acme/prod/db", ["read"], "KV mount"),
        ("secret/data/other/prod/db", ["read"], "Vault paths"),
        ("secret/data/acme/prod/db", ["patch"], "no tier grants patch"),
        ("secret/data/acme/prod/*", ["update"], "wildcard"),
    ],
)
def test_vault_operations_outside(path: str, capabilities: list[str], reason: str) -> None:
    result = check([{"path": path, "capabilities": capabilities}], "vault")
    assert reason in result.outside[0].reason


@pytest.mark.parametrize(
    ("table", "privileges", "expected"),
    [
        ("billing.invoices", ["SELECT"], "read"),
        ("billing.invoices", ["INSERT", "UPDATE"], "write"),
        ("billing.ledger", ["TRUNCATE"], "delete"),
        ("reports.daily", ["DELETE"], "delete"),
        ("reports.*", ["SELECT"], "read"),
        ("reports.*", ["INSERT"], "names every table"),
        ("billing.payroll", ["SELECT"], "not one of the environment's"),
    ],
)
def test_database_operations(table: str, privileges: list[str], expected: str) -> None:
    result = check([{"object": table, "privileges": privileges}], "database")
    if expected in ("read", "write", "delete"):
        assert result.raise_if_outside() == expected
    else:
        assert expected in result.outside[0].reason


def test_an_environment_without_the_backend_refuses() -> None:
    data = acme_data()
    del data["environments"]["prod"]["vault"]
    result = check(
        [{"path": "secret/data/acme/prod/x", "capabilities": ["read"]}],
        "vault",
        scope=scope_from(data),
    )
    assert "no vault backend" in result.outside[0].reason
