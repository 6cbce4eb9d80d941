"""The broker's own IAM policy (deploy/iam/broker-policy.json) against the project's IAM lint
and against the example plan: it reaches every tier role, and IAM writes reach only tier
roles of the broker's own account, never the broker itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broker.cli import cli
from broker.config import load_settings
from broker.policy.globs import covers
from broker.policy.iam_actions import IamDatabase, iam_database
from tests.deploy.iam_lint import lint_policy_document

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "deploy" / "iam" / "broker-policy.json"
BROKER_YAML = ROOT / "deploy" / "kubernetes" / "broker.yaml"

# What the kill switch needs, and why (anything else destructive or permission-changing fails).
KILL_SWITCH_DESTRUCTIVE = {"iam:DeleteRolePolicy": "broker unfreeze lifts the revocation policy"}
KILL_SWITCH_PERMISSIONS = {
    "iam:PutRolePolicy": "broker revoke puts the deny-older-sessions policy on a tier role",
    "iam:DeleteRolePolicy": "broker unfreeze removes it",
}


@pytest.fixture(scope="module")
def iam() -> IamDatabase:
    return iam_database()


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(POLICY.read_text())
    return document


@pytest.fixture(scope="module")
def plan() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["scopes", "plan", str(ROOT / "scopes"), "--json"])
    assert result.exit_code == 0, result.output
    compiled: dict[str, Any] = json.loads(result.output)
    return compiled


def statements_with(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [
        s
        for s in policy["Statement"]
        if action.lower() in (a.lower() for a in _list(s.get("Action", [])))
    ]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_broker_policy_passes_the_projects_iam_lint(
    policy: dict[str, Any], iam: IamDatabase
) -> None:
    assert lint_policy_document(policy, iam, KILL_SWITCH_DESTRUCTIVE, KILL_SWITCH_PERMISSIONS) == []


def test_broker_policy_grants_only_sts_and_the_kill_switch_actions(
    policy: dict[str, Any],
) -> None:
    actions = {a for s in policy["Statement"] for a in _list(s["Action"])}
    assert actions == {
        "sts:AssumeRole",
        "sts:SetSourceIdentity",
        "sts:TagSession",
        "iam:PutRolePolicy",
        "iam:GetRolePolicy",
        "iam:DeleteRolePolicy",
    }


def test_every_tier_role_of_the_example_plan_can_be_assumed(
    policy: dict[str, Any], plan: dict[str, Any]
) -> None:
    role_arns = {
        tier["aws"]["role_arn"]
        for environments in plan.values()
        for tiers in environments.values()
        for tier in tiers.values()
        if tier.get("aws")
    }
    assert role_arns, "the example scopes name tier roles"
    for action in ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"):
        patterns = [r for s in statements_with(policy, action) for r in _list(s["Resource"])]
        missing = [arn for arn in role_arns if not any(covers(p, arn) for p in patterns)]
        assert missing == [], f"{action} does not reach {missing}"


def test_iam_writes_stay_in_the_broker_account_and_off_the_broker_itself(
    policy: dict[str, Any],
) -> None:
    settings = load_settings(BROKER_YAML)
    principal = settings.aws.broker_principal_arn
    assert principal is not None
    account = principal.split(":")[4]
    admin_roles = [
        r for s in policy["Statement"] if s["Sid"] == "AssumeKillSwitchRoles" for r in s["Resource"]
    ]
    for action in ("iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetRolePolicy"):
        for statement in statements_with(policy, action):
            for pattern in _list(statement["Resource"]):
                # IAM calls act in the caller's account: other accounts go through admin roles.
                assert pattern.split(":")[4] == account, pattern
                assert not covers(pattern, principal), f"{action} on the broker's own role"
                for admin in admin_roles:
                    assert not covers(pattern, admin), f"{action} on a kill-switch role"


def test_revocation_policy_writes_need_the_tier_boundary(policy: dict[str, Any]) -> None:
    for action in ("iam:PutRolePolicy", "iam:DeleteRolePolicy"):
        for statement in statements_with(policy, action):
            condition = statement["Condition"]["StringLike"]["iam:PermissionsBoundary"]
            assert all(":policy/broker/boundary/" in arn for arn in _list(condition))


# -- the lint itself catches what it should ---------------------------------------------------


def _document(**statement: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **statement}]}


@pytest.mark.parametrize(
    ("statement", "rule"),
    [
        ({"Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"}, "unknown-action"),
        ({"Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}, "wildcard-action"),
        ({"Action": "*", "Resource": "arn:aws:s3:::b/*"}, "wildcard-action"),
        ({"Action": "s3:GetObject", "Resource": "*"}, "wildcard-resource"),
        ({"Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/x"}, "wildcard-resource"),
        ({"Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::b"}, "destructive-action"),
        (
            {"Action": "iam:AttachRolePolicy", "Resource": "arn:aws:iam::111111111111:role/x"},
            "permissions-management",
        ),
        ({"NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}, "not-element"),
        ({"Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*", "Effect": "Deny"}, "effect"),
    ],
)
def test_lint_refuses(statement: dict[str, Any], rule: str, iam: IamDatabase) -> None:
    problems = lint_policy_document(_document(**statement), iam)
    assert any(p.endswith(f"[{rule}]") for p in problems), problems


def test_lint_allows_star_for_actions_without_resources(iam: IamDatabase) -> None:
    document = _document(Action=["sts:GetCallerIdentity", "s3:ListAllMyBuckets"], Resource="*")
    assert lint_policy_document(document, iam) == []
