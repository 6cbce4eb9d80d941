"""Build scope files for tests: a small valid scope that each test bends one way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.loader import LoadedScope, load_scope_file

VALID: dict[str, Any] = {
    "apiVersion": "broker/v1",
    "kind": "Scope",
    "metadata": {"service": "shop", "description": "test shop"},
    "requesters": [{"subject": "agent:shop"}],
    "environments": {
        "prod": {
            "aws": {
                "account": "111111111111",
                "regions": ["us-east-1", "eu-west-1"],
                "roles": {
                    "read": "arn:aws:iam::${account}:role/shop-prod-read",
                    "write": "arn:aws:iam::${account}:role/shop-prod-write",
                    "delete": "arn:aws:iam::${account}:role/shop-prod-delete",
                },
            },
            "vault": {"kv": {"mount": "secret", "paths": ["shop/${env}/*"]}},
            "database": {
                "connection": "shop-prod",
                "objects": ["public.orders"],
                "owner_role": "shop_owner",
                "roles": {
                    "read": "shop-prod-read",
                    "write": "shop-prod-write",
                    "delete": "shop-prod-delete",
                },
            },
        },
        "staging": {
            "aws": {
                "account": "222222222222",
                "regions": ["us-east-1"],
                "roles": {
                    "read": "arn:aws:iam::${account}:role/shop-staging-read",
                    "write": "arn:aws:iam::${account}:role/shop-staging-write",
                    "delete": "arn:aws:iam::${account}:role/shop-staging-delete",
                },
            },
        },
    },
    "tiers": {
        "read": {
            "ttl": "1h",
            "aws": [
                {"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::shop-${env}-data/*"]},
                {"actions": ["s3:ListBucket"], "resources": ["arn:aws:s3:::shop-${env}-data"]},
                {
                    "actions": ["dynamodb:GetItem"],
                    "resources": ["arn:aws:dynamodb:${region}:${account}:table/shop-${env}"],
                },
            ],
        },
        "write": {
            "ttl": "30m",
            "aws": [
                {"actions": ["s3:PutObject"], "resources": ["arn:aws:s3:::shop-${env}-data/*"]}
            ],
            "approval": {"approvers": ["alice"], "required": 1},
            "max_resources": 3,
        },
        "delete": {
            "ttl": "15m",
            "aws": [
                {"actions": ["s3:DeleteObject"], "resources": ["arn:aws:s3:::shop-${env}-data/*"]}
            ],
            "approval": {"groups": ["sre"], "required": 2, "delay": "10m"},
        },
    },
}


def scope_data(**changes: Any) -> dict[str, Any]:
    """A deep copy of VALID with top-level keys replaced."""
    data = copy.deepcopy(VALID)
    data.update(changes)
    return data


def write_scope(directory: Path, data: dict[str, Any] | str, name: str = "shop.yaml") -> Path:
    path = directory / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def lint_context() -> LintContext:
    return LintContext(iam=iam_database())


def load_ok(path: Path) -> LoadedScope:
    loaded, problems = load_scope_file(path)
    assert not problems, problems
    assert loaded is not None
    return loaded
