"""A session with an intent's policy can do the intent and nothing else, enforced by the
local AWS stand-in (moto with AWS's policy evaluation, docs/local-stack.md)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from broker.intent.compile import session_policy
from broker.intent.model import AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import iam_database
from tests.fixtures.moto import ACCOUNT, Moto, assume_role, denied
from tests.intent.support import fixture

REGION = "us-east-1"
TIER_ROLE = {  # the tier role is broad on purpose: the session policy alone must narrow it
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "dynamodb:*"], "Resource": "*"}],
}


def intent_from(name: str, replacements: dict[str, str]) -> Intent:
    text = json.dumps(fixture(name))
    for old, new in replacements.items():
        text = text.replace(old, new)
    plan: dict[str, Any] = json.loads(text)
    return parse_intent({"terraform_plan": plan}, "aws", iam_database(), AwsTarget(ACCOUNT, REGION))


def test_a_plan_updating_one_object_can_write_that_object_and_nothing_else(moto: Moto) -> None:
    bucket = f"docs-{secrets.token_hex(4)}"
    admin = moto.client("s3", moto.admin_key)
    admin.create_bucket(Bucket=bucket)
    admin.put_object(Bucket=bucket, Key="templates/invoice.html", Body=b"v1")
    admin.put_object(Bucket=bucket, Key="templates/receipt.html", Body=b"v1")
    intent = intent_from("plan_s3_object_update", {"acme-prod-docs": bucket})
    credentials = assume_role(moto, TIER_ROLE, session_policy(intent, REGION))
    s3 = moto.agent_client(credentials, "s3")
    key = "templates/invoice.html"
    s3.put_object(Bucket=bucket, Key=key, Body=b"v2")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"v2"
    assert denied(lambda: s3.put_object(Bucket=bucket, Key="templates/receipt.html", Body=b"x"))
    assert denied(lambda: s3.get_object(Bucket=bucket, Key="templates/receipt.html"))
    assert denied(lambda: s3.delete_object(Bucket=bucket, Key=key))
    assert denied(lambda: s3.delete_bucket(Bucket=bucket))
    assert denied(lambda: s3.list_objects_v2(Bucket=bucket))


def test_a_plan_replacing_a_table_can_replace_that_table_only(moto: Moto) -> None:
    table, other = f"ledger-{secrets.token_hex(4)}", f"other-{secrets.token_hex(4)}"
    admin = moto.client("dynamodb", moto.admin_key)
    for name in (table, other):
        admin.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "entry_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "entry_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    intent = intent_from(
        "plan_dynamodb_replace", {"acme-prod-ledger": table, "111111111111": ACCOUNT}
    )
    credentials = assume_role(moto, TIER_ROLE, session_policy(intent, REGION))
    dynamodb = moto.agent_client(credentials, "dynamodb")
    item = {"entry_id": {"S": "1"}}
    assert denied(lambda: dynamodb.put_item(TableName=table, Item=item))
    assert denied(lambda: dynamodb.delete_table(TableName=other))
    assert denied(
        lambda: moto.agent_client(credentials, "dynamodb", "eu-west-1").delete_table(
            TableName=table
        )
    )
    dynamodb.delete_table(TableName=table)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "account_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert dynamodb.describe_table(TableName=table)["Table"]["KeySchema"][0]["AttributeName"] == (
        "account_id"
    )
    assert denied(
        lambda: dynamodb.create_table(
            TableName=f"{table}-2",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    )
