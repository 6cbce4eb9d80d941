"""The canonical form round-trips, and a stored intent that was altered is refused."""

from __future__ import annotations

import json

import pytest

from broker.intent.canonical import from_canonical
from broker.intent.compile import session_policy
from broker.intent.errors import InvalidIntent
from broker.intent.model import AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.policy.iam_actions import iam_database
from tests.intent.support import ACCOUNT, REGION, fixture

TARGET = AwsTarget(ACCOUNT, REGION)


def intents() -> list[Intent]:
    iam = iam_database()
    return [
        parse_intent({"terraform_plan": fixture("plan_lambda_with_role")}, "aws", iam, TARGET),
        parse_intent({"terraform_plan": fixture("plan_dynamodb_replace")}, "aws", iam, TARGET),
        parse_intent(
            {"cloudformation_change_set": fixture("change_set_replace_table")}, "aws", iam, TARGET
        ),
        parse_intent(
            {"operations": [{"path": "secret/data/a/b", "capabilities": ["read", "update"]}]},
            "vault",
            iam,
        ),
        parse_intent(
            {"operations": [{"object": "billing.ledger", "privileges": ["SELECT", "DELETE"]}]},
            "database",
            iam,
        ),
    ]


@pytest.mark.parametrize("intent", intents(), ids=lambda i: f"{i.kind}-{i.backend}")
def test_the_canonical_form_round_trips(intent: Intent) -> None:
    again = from_canonical(intent.canonical_json, intent.sha256)
    assert again == intent and again.sha256 == intent.sha256
    if intent.backend == "aws":
        assert session_policy(again, REGION) == session_policy(intent, REGION)


def test_an_altered_stored_intent_is_refused() -> None:
    intent = intents()[1]
    document = json.loads(intent.canonical_json)
    document["operations"] = [op for op in document["operations"] if "Delete" not in op["action"]]
    altered = json.dumps(document, sort_keys=True, separators=(",", ":"))
    with pytest.raises(InvalidIntent, match="does not match its hash"):
        from_canonical(altered, intent.sha256)
    with pytest.raises(InvalidIntent, match="does not match its hash"):
        from_canonical(intent.canonical_json, "0" * 64)
    with pytest.raises(InvalidIntent, match="not JSON"):
        from_canonical("{", intent.sha256)
