"""Compiler output: golden documents for the example scopes, and narrowing rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from broker.errors import BadRequest, PolicyTooLarge
from broker.policy.compiler import (
    SESSION_POLICY_MAX_CHARS,
    compile_scope,
    database_role,
    dumps,
    role_policy,
    session_policy,
    vault_policy,
)
from broker.policy.iam_actions import iam_database
from broker.scopes.model import Scope
from broker.scopes.plan import render_json
from broker.scopes.registry import load_scope_set
from tests.scopes.factory import lint_context, load_ok, scope_data, write_scope

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def example(service: str) -> Scope:
    result = load_scope_set(ROOT / "scopes", lint_context())
    return result.scope_set.scopes[service]


@pytest.mark.parametrize("service", ["payments", "ledger", "deploy"])
def test_compiled_documents_match_golden_files(service: str) -> None:
    """Review a golden diff like any policy change: run with UPDATE_GOLDEN=1 to accept it."""
    rendered = json.dumps(compile_scope(example(service), iam_database()), sort_keys=True, indent=2)
    golden = GOLDEN / f"{service}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered + "\n")
    assert rendered + "\n" == golden.read_text()


def test_output_is_byte_identical_across_runs_and_file_order(tmp_path: Path) -> None:
    scopes = list(load_scope_set(ROOT / "scopes", lint_context()).scope_set.scopes.values())
    first = render_json(scopes, iam_database())
    assert render_json(list(reversed(scopes)), iam_database()) == first
    assert render_json(scopes, iam_database()) == first


def test_role_policy_spans_the_environment_regions_only() -> None:
    scope = example("payments")
    policy = role_policy(scope, scope.environments["prod"], "read", iam_database())
    assert policy is not None
    text = dumps(policy)
    assert "111111111111" in text and "222222222222" not in text
    assert "payments-prod-" in text and "payments-staging" not in text
    for statement in policy["Statement"]:
        assert statement["Condition"] == {
            "StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}
        }


def test_write_role_includes_read_and_write_but_not_delete() -> None:
    scope = example("payments")
    policy = role_policy(scope, scope.environments["prod"], "write", iam_database())
    assert policy is not None
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"s3:GetObject", "s3:PutObject", "dynamodb:PutItem"} <= actions
    assert not any("Delete" in a for a in actions)


def test_session_policy_narrows_to_region_and_requested_resources() -> None:
    scope = example("payments")
    env = scope.environments["prod"]
    requested = ["arn:aws:s3:::payments-prod-invoices/2026/11/*"]
    policy = session_policy(scope, env, "eu-west-1", "write", iam_database(), requested)
    assert policy["Statement"] == [
        {
            "Action": [
                "s3:GetObject",
                "s3:GetObjectTagging",
                "s3:PutObject",
                "s3:PutObjectTagging",
            ],
            "Condition": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}},
            "Effect": "Allow",
            "Resource": requested,
        }
    ]


def test_session_policy_keeps_star_statements_for_actions_without_resources() -> None:
    scope = example("deploy")
    env = scope.environments["prod"]
    stack = "arn:aws:cloudformation:us-east-1:111111111111:stack/acme-prod-web/abc"
    policy = session_policy(scope, env, "us-east-1", "read", iam_database(), [stack])
    resources = [s["Resource"] for s in policy["Statement"]]
    assert resources == [["*"], [stack]]


@pytest.mark.parametrize(
    "resource",
    [
        "arn:aws:s3:::payments-staging-invoices/x",  # another environment
        "arn:aws:s3:::PAYMENTS-PROD-INVOICES/x",  # case trick
        "arn:aws-cn:s3:::payments-prod-invoices/x",  # partition swap
        "arn:aws:dynamodb:us-east-1:222222222222:table/payments-prod-ledger",  # account swap
        "arn:aws:dynamodb:eu-west-1:111111111111:table/payments-prod-ledger",
    ],  # other region
)
def test_session_policy_refuses_resources_outside_the_request(resource: str) -> None:
    scope = example("payments")
    with pytest.raises(BadRequest) as error:
        session_policy(
            scope, scope.environments["prod"], "us-east-1", "read", iam_database(), [resource]
        )
    assert error.value.field == "resources"


def test_session_policy_refuses_a_region_outside_the_environment() -> None:
    scope = example("deploy")
    with pytest.raises(BadRequest) as error:
        session_policy(scope, scope.environments["prod"], "eu-west-1", "read", iam_database())
    assert error.value.field == "region"


def test_oversized_session_policy_is_an_error_never_truncated() -> None:
    scope = example("payments")
    many = [f"arn:aws:s3:::payments-prod-invoices/customer-{i:05d}/*" for i in range(40)]
    with pytest.raises(PolicyTooLarge) as error:
        session_policy(
            scope, scope.environments["prod"], "us-east-1", "write", iam_database(), many
        )
    assert f"at most {SESSION_POLICY_MAX_CHARS}" in error.value.message


def test_vault_policy_capabilities_per_tier() -> None:
    scope = example("ledger")
    env = scope.environments["prod"]
    read = vault_policy(scope, env, "read")
    write = vault_policy(scope, env, "write")
    delete = vault_policy(scope, env, "delete")
    assert read is not None and write is not None and delete is not None
    assert 'path "secret/data/ledger/prod/*" {\n  capabilities = ["read"]\n}' in read
    assert (
        'path "secret/data/ledger/prod/*" {\n  capabilities = ["create", "read", "update"]\n}'
        in write
    )
    assert "destroy" not in write and "delete" not in write
    assert 'path "secret/destroy/ledger/prod/*" {\n  capabilities = ["update"]\n}' in delete


def test_kv_version_1_policy(tmp_path: Path) -> None:
    data = scope_data()
    data["environments"]["prod"]["vault"]["kv"]["version"] = 1
    scope = load_ok(write_scope(tmp_path, data)).scope
    policy = vault_policy(scope, scope.environments["prod"], "write")
    assert policy is not None
    assert (
        'path "secret/shop/prod/*" {\n  capabilities = ["create", "read", "update", "list"]\n}'
        in policy
    )


def test_database_role_statements_per_tier() -> None:
    scope = example("ledger")
    env = scope.environments["prod"]
    read = database_role(scope, env, "read")
    delete = database_role(scope, env, "delete")
    assert read is not None and delete is not None
    assert read.name == "ledger-prod-read" and read.db_name == "ledger-prod"
    assert 'GRANT SELECT ON TABLE "ledger"."accounts" TO "{{name}}";' in read.creation_statements
    assert not any("INSERT" in s or "ledger_owner" in s for s in read.creation_statements)
    assert (
        'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE "ledger"."entries" TO "{{name}}";'
        in delete.creation_statements
    )
    assert 'GRANT "ledger_owner" TO "{{name}}";' in delete.creation_statements
    assert delete.revocation_statements[-1] == 'DROP ROLE IF EXISTS "{{name}}";'
    assert delete.default_ttl == delete.max_ttl == 900


def test_schema_wildcard_grants_all_tables_in_schema() -> None:
    scope = example("ledger")
    role = database_role(scope, scope.environments["staging"], "write")
    assert role is not None
    assert (
        'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA "ledger" TO "{{name}}";'
        in role.creation_statements
    )
