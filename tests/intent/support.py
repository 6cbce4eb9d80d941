"""A scope for intent tests, written as YAML and loaded (and linted) like any other."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg

from broker.scopes.lint import lint
from broker.scopes.model import Scope
from tests.fixtures.broker import Broker, make_broker
from tests.fixtures.postgres import ADMIN_URL, create_database, drop_database
from tests.scopes.factory import lint_context, load_ok, write_scope

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT = "111111111111"
REGION = "us-east-1"
TABLE = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/acme-prod-ledger"
DOC = "arn:aws:s3:::acme-prod-docs/templates/invoice.html"

ACME: dict[str, Any] = {
    "apiVersion": "broker/v1",
    "kind": "Scope",
    "metadata": {"service": "acme", "description": "intent tests"},
    "requesters": [{"subject": "agent:acme"}],
    "environments": {
        "prod": {
            "aws": {
                "account": ACCOUNT,
                "regions": [REGION, "eu-west-1"],
                "roles": {
                    "read": "arn:aws:iam::${account}:role/acme-prod-read",
                    "write": "arn:aws:iam::${account}:role/acme-prod-write",
                    "delete": "arn:aws:iam::${account}:role/acme-prod-delete",
                },
            },
            "vault": {"kv": {"mount": "secret", "paths": ["acme/${env}/*"]}},
            "database": {
                "connection": "acme-prod",
                "objects": ["billing.invoices", "billing.ledger", "reports.*"],
                "roles": {
                    "read": "acme-prod-read",
                    "write": "acme-prod-write",
                    "delete": "acme-prod-delete",
                },
            },
        },
    },
    "tiers": {
        "read": {
            "ttl": "1h",
            "aws": [
                {
                    "actions": ["s3:GetObject", "s3:GetObjectTagging"],
                    "resources": ["arn:aws:s3:::acme-${env}-docs/*"],
                },
                {"actions": ["s3:ListBucket"], "resources": ["arn:aws:s3:::acme-${env}-docs"]},
                {
                    "actions": [
                        "dynamodb:DescribeTable",
                        "dynamodb:DescribeContinuousBackups",
                        "dynamodb:DescribeTimeToLive",
                        "dynamodb:ListTagsOfResource",
                    ],
                    "resources": ["arn:aws:dynamodb:${region}:${account}:table/acme-${env}-*"],
                },
            ],
        },
        "write": {
            "ttl": "30m",
            "aws": [
                {
                    "actions": ["s3:PutObject", "s3:PutObjectTagging"],
                    "resources": ["arn:aws:s3:::acme-${env}-docs/*"],
                },
                {
                    "actions": [
                        "dynamodb:CreateTable",
                        "dynamodb:UpdateTable",
                        "dynamodb:TagResource",
                        "dynamodb:UntagResource",
                        "dynamodb:UpdateTimeToLive",
                    ],
                    "resources": ["arn:aws:dynamodb:${region}:${account}:table/acme-${env}-*"],
                },
            ],
            "approval": {"approvers": ["alice", "bob"], "required": 1},
        },
        "delete": {
            "ttl": "15m",
            "aws": [
                {
                    "actions": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
                    "resources": ["arn:aws:s3:::acme-${env}-docs/*"],
                },
                {
                    "actions": ["dynamodb:DeleteTable"],
                    "resources": ["arn:aws:dynamodb:${region}:${account}:table/acme-${env}-*"],
                },
            ],
            "approval": {"approvers": ["alice", "bob"], "required": 2, "delay": "10m"},
        },
    },
}


def scope_from(data: dict[str, Any]) -> Scope:
    with tempfile.TemporaryDirectory() as directory:
        loaded = load_ok(write_scope(Path(directory), data, "acme.yaml"))
    return loaded.scope


@lru_cache(maxsize=1)
def acme() -> Scope:
    with tempfile.TemporaryDirectory() as directory:
        loaded = load_ok(write_scope(Path(directory), ACME, "acme.yaml"))
        problems = lint(loaded, lint_context())
    assert not problems, problems
    return loaded.scope


def acme_data() -> dict[str, Any]:
    return copy.deepcopy(ACME)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def resource_change(plan: dict[str, Any], address: str) -> dict[str, Any]:
    for change in plan["resource_changes"]:
        if change["address"] == address:
            result: dict[str, Any] = change
            return result
    raise KeyError(address)


@contextmanager
def database_with(*statements: str) -> Iterator[str]:
    """A fresh PostgreSQL database set up by ``statements``, dropped after; yields its URL."""
    name = create_database()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement.encode())
        yield url
    finally:
        drop_database(name)


def intent_broker(tmp_path: Path, data: dict[str, Any] | None = None, **settings: Any) -> Broker:
    """A broker (fake backends unless given) whose only scope is ``data`` (default: acme)."""
    scopes = tmp_path / "scopes"
    scopes.mkdir(exist_ok=True)
    write_scope(scopes, data or ACME, "acme.yaml")
    return make_broker(tmp_path, **settings)


def plan_request(plan: dict[str, Any], tier: str = "write", **fields: Any) -> dict[str, Any]:
    """A credential request for acme/prod in us-east-1 carrying ``plan`` as its intent."""
    return {
        "service": "acme",
        "environment": "prod",
        "region": REGION,
        "tier": tier,
        "backend": "aws",
        "justification": "apply the reviewed plan",
        "intent": {"terraform_plan": plan},
        **fields,
    }
