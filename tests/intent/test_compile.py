"""The tightest documents, proven against the real servers that enforce them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import hvac
import hvac.exceptions
import psycopg
import pytest

from broker.errors import PolicyTooLarge
from broker.intent.compile import compile_intent, session_policy
from broker.intent.errors import IntentOutsideScope
from broker.intent.model import AwsOperation, AwsTarget, Intent
from broker.intent.parse import parse_intent
from broker.policy.compiler import SESSION_POLICY_MAX_CHARS
from broker.policy.iam_actions import iam_database
from broker.scopes.model import Backend
from tests.fixtures.openbao import OpenBao
from tests.intent.support import ACCOUNT, DOC, REGION, TABLE, acme, database_with, fixture

TARGET = AwsTarget(ACCOUNT, REGION)


def intent_of(operations: list[dict[str, Any]], backend: Backend = "aws") -> Intent:
    return parse_intent({"operations": operations}, backend, iam_database(), TARGET)


def pairs(policy: dict[str, Any]) -> set[tuple[str, str]]:
    return {(a, r) for s in policy["Statement"] for a in s["Action"] for r in s["Resource"]}


def test_the_session_policy_allows_exactly_the_operations() -> None:
    for name in ("plan_s3_object_update", "plan_dynamodb_replace", "plan_lambda_with_role"):
        intent = parse_intent({"terraform_plan": fixture(name)}, "aws", iam_database(), TARGET)
        policy = session_policy(intent, REGION)
        ops = {(op.action, op.resource) for op in intent.operations if isinstance(op, AwsOperation)}
        # Statements group resources needing the same actions, so the cross product of
        # each statement's actions and resources is exactly the intent: no pair more.
        assert pairs(policy) == ops, name


def test_the_compiled_grant_is_inside_the_tier_with_the_region_condition() -> None:
    scope = acme()
    intent = intent_of(
        [
            {"action": "dynamodb:DeleteTable", "resource": TABLE},
            {"action": "s3:PutObject", "resource": DOC},
        ]
    )
    grant = compile_intent(intent, scope, scope.environments["prod"], REGION, iam_database())
    assert grant.tier == "delete" and grant.sha256 == intent.sha256
    assert grant.session_policy is not None
    for statement in grant.session_policy["Statement"]:
        assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": [REGION]}}
    assert pairs(grant.session_policy) == {
        ("dynamodb:DeleteTable", TABLE),
        ("s3:PutObject", DOC),
    }


def test_an_intent_outside_the_scope_compiles_to_nothing() -> None:
    scope = acme()
    intent = intent_of([{"action": "s3:PutObject", "resource": "arn:aws:s3:::elsewhere/x"}])
    with pytest.raises(IntentOutsideScope):
        compile_intent(intent, scope, scope.environments["prod"], REGION, iam_database())


def test_a_policy_past_the_sts_limit_is_refused_never_truncated() -> None:
    objects = [
        {"action": "s3:PutObject", "resource": f"arn:aws:s3:::acme-prod-docs/reports/{n:04}.csv"}
        for n in range(60)
    ]
    intent = intent_of(objects)
    with pytest.raises(PolicyTooLarge) as caught:
        session_policy(intent, REGION)
    assert f"at most {SESSION_POLICY_MAX_CHARS}" in caught.value.message
    fits = intent_of(objects[:3])
    assert len(json.dumps(session_policy(fits, REGION), separators=(",", ":"))) <= 2048


def test_the_vault_policy_lets_a_token_do_exactly_the_intent(openbao: OpenBao) -> None:
    scope = acme()
    intent = intent_of(
        [{"path": "secret/data/acme/prod/intent-db", "capabilities": ["create", "update"]}],
        "vault",
    )
    grant = compile_intent(intent, scope, scope.environments["prod"], None, iam_database())
    assert grant.tier == "write" and grant.vault_policy is not None
    name = f"intent-test-{intent.sha256[:12]}"
    root = openbao.client()
    root.sys.create_or_update_policy(name, grant.vault_policy)
    token = root.auth.token.create(policies=[name], no_default_policy=True, ttl="5m")
    agent = openbao.client(token["auth"]["client_token"])
    agent.secrets.kv.v2.create_or_update_secret("acme/prod/intent-db", {"password": "x"})
    with pytest.raises(hvac.exceptions.Forbidden):
        agent.secrets.kv.v2.create_or_update_secret("acme/prod/other", {"password": "x"})
    with pytest.raises(hvac.exceptions.Forbidden):
        agent.secrets.kv.v2.read_secret_version(
            "acme/prod/intent-db", raise_on_deleted_version=True
        )
    with pytest.raises(hvac.exceptions.Forbidden):
        agent.secrets.kv.v2.delete_metadata_and_all_versions("acme/prod/intent-db")


@pytest.fixture()
def billing_database() -> Iterator[str]:
    with database_with(
        "CREATE SCHEMA billing",
        "CREATE TABLE billing.invoices (id int)",
        "CREATE TABLE billing.ledger (id int)",
        "INSERT INTO billing.invoices VALUES (1), (2)",
        "INSERT INTO billing.ledger VALUES (1)",
    ) as url:
        yield url


def test_the_database_grant_holds_exactly_the_intent(billing_database: str) -> None:
    scope = acme()
    intent = intent_of(
        [{"object": "billing.invoices", "privileges": ["SELECT", "DELETE"]}], "database"
    )
    grant = compile_intent(intent, scope, scope.environments["prod"], None, iam_database())
    role = grant.database_role
    assert grant.tier == "delete" and role is not None
    assert not any("OWNER" in s.upper() or "ledger" in s for s in role.creation_statements)
    login = f"intent_{intent.sha256[:10]}"
    with psycopg.connect(billing_database, autocommit=True) as admin:
        for statement in role.creation_statements:
            admin.execute(
                statement.replace("{{name}}", login)
                .replace("{{password}}", "pw")
                .replace("{{expiration}}", "2099-01-01")
            )
    agent_url = billing_database.replace("postgres@", f"{login}:pw@")
    try:
        with psycopg.connect(agent_url, autocommit=True) as agent:
            assert agent.execute("DELETE FROM billing.invoices WHERE id = 1").rowcount == 1
            for forbidden in (
                "SELECT * FROM billing.ledger",
                "INSERT INTO billing.invoices VALUES (3)",
                "TRUNCATE billing.invoices",
                "DROP TABLE billing.invoices",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    agent.execute(forbidden)
    finally:
        with psycopg.connect(billing_database, autocommit=True) as admin:
            for statement in role.revocation_statements:
                admin.execute(statement.replace("{{name}}", login))
