"""Lint closes the paths from a session to more power: escalation actions, environments that
reach each other through Vault or the database, a delete without a delay, policy variables."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from broker.policy.escalation import MINTS_CREDENTIALS
from broker.policy.grants import ESCALATION_MARK
from broker.scopes import lint as rules
from broker.scopes.lint import LintContext
from broker.scopes.plan import render_plan
from tests.scopes.factory import lint_context, load_ok, scope_data, write_scope
from tests.scopes.test_lint import findings
from tests.scopes.test_loader import reasons

ESCALATIONS = [
    "iam:PassRole",
    "sts:AssumeRole",
    "sts:AssumeRoleWithWebIdentity",
    "sts:GetFederationToken",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "s3:PutBucketPolicy",
    "kms:CreateGrant",
    "ecr:GetAuthorizationToken",
    "ssm:StartSession",
]


def _write_with(action: str, resources: list[str] | None = None) -> dict[str, Any]:
    data = scope_data()
    data["tiers"]["write"]["aws"] = [
        {"actions": [action], "resources": resources or ["arn:aws:iam::${account}:role/shop-*"]}
    ]
    return data


@pytest.mark.parametrize("action", ESCALATIONS)
def test_each_escalation_action_in_a_write_tier_is_refused(tmp_path: Path, action: str) -> None:
    (problem,) = findings(tmp_path, _write_with(action), rules.escalation_actions)
    assert f"grants {action}, which " in problem and "[escalation-action]" in problem
    assert "the kill switch cannot reach what it hands out" in problem


def test_credential_minting_read_actions_are_refused_in_read_too(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["read"]["aws"].append({"actions": ["sts:GetSessionToken"], "resources": ["*"]})
    (problem,) = findings(tmp_path, data, rules.escalation_actions)
    assert "'sts:GetSessionToken' in tier read grants sts:GetSessionToken" in problem


def test_a_wildcard_reaching_one_is_refused(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["read"]["aws"].append({"actions": ["sts:Get*"], "resources": ["*"]})
    (problem,) = findings(tmp_path, data, rules.escalation_actions)
    assert "'sts:Get*' in tier read grants sts:GetFederationToken" in problem
    assert "(and 2 more)" in problem  # GetServiceBearerToken, GetSessionToken


def test_the_kin_exist_in_aws_data() -> None:
    iam = lint_context().iam
    missing = [name for name in MINTS_CREDENTIALS if not iam.expand(name)]
    assert not missing


def _excused(granted: str, **exception: str) -> dict[str, Any]:
    data = _write_with(granted)
    data["tiers"]["write"]["escalation_exceptions"] = [
        {
            "action": granted,
            "reason": "The deploy job hands its task role to ECS; only that role is named.",
            "reviewed_by": "alice (security), 2026-05-01",
            **exception,
        }
    ]
    return data


def test_a_reviewed_exception_allows_it_and_plan_shows_it(tmp_path: Path) -> None:
    data = _excused("iam:PassRole")
    assert findings(tmp_path, data, rules.escalation_actions) == []
    scope = load_ok(write_scope(tmp_path, data)).scope
    plan = render_plan([scope], lint_context().iam)
    line = next(line for line in plan.splitlines() if ESCALATION_MARK in line)
    assert "iam:PassRole: The deploy job hands its task role to ECS" in line
    assert "(reviewed by alice (security), 2026-05-01)" in line


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"reason": "ok"}, "must explain why, in a sentence"),
        ({"action": "iam:Pass*"}, "one action, e.g. iam:PassRole"),
    ],
)
def test_an_exception_says_what_and_why(
    tmp_path: Path, change: dict[str, str], reason: str
) -> None:
    found = reasons(write_scope(tmp_path, _excused("iam:PassRole", **change)))
    assert any(reason in p for p in found), found
    data = _excused("iam:PassRole")
    del data["tiers"]["write"]["escalation_exceptions"][0]["reviewed_by"]
    assert any(
        "missing required key 'reviewed_by'" in p for p in reasons(write_scope(tmp_path, data))
    )


def test_an_exception_must_excuse_something(tmp_path: Path) -> None:
    unused = _excused("iam:PassRole")
    unused["tiers"]["write"]["aws"][0]["actions"] = ["s3:PutObject"]
    unused["tiers"]["write"]["aws"][0]["resources"] = ["arn:aws:s3:::shop-${env}/*"]
    (problem,) = findings(tmp_path, unused, rules.escalation_actions)
    assert "names iam:PassRole, which tier write does not grant" in problem
    harmless = _excused("s3:PutObject")
    harmless["tiers"]["write"]["aws"][0]["resources"] = ["arn:aws:s3:::shop-${env}/*"]
    (problem,) = findings(tmp_path, harmless, rules.escalation_actions)
    assert "s3:PutObject opens no escalation path" in problem


def test_a_dev_kv_path_that_overlaps_prod_is_refused(tmp_path: Path) -> None:
    """A dev path payments/* reads prod's payments/prod/... on the same mount."""
    data = scope_data()
    data["environments"]["staging"]["vault"] = {"kv": {"mount": "secret", "paths": ["shop/*"]}}
    found = findings(tmp_path, data, rules.environment_overlap)
    assert len(found) == 1
    assert "'shop/*' (staging) also matches 'shop/prod/*' (prod) on secret" in found[0]
    assert "[environment-overlap]" in found[0]
    data["environments"]["staging"]["vault"] = {
        "kv": {"mount": "secret-staging", "paths": ["shop/*"]}
    }
    assert findings(tmp_path, data, rules.environment_overlap) == []


def test_database_objects_of_one_connection_are_kept_apart(tmp_path: Path) -> None:
    data = scope_data()
    staging = data["environments"]["staging"]
    staging["database"] = copy.deepcopy(data["environments"]["prod"]["database"])
    staging["database"]["objects"] = ["public.*"]
    (problem,) = findings(tmp_path, data, rules.environment_overlap)
    assert (
        "'public.*' (staging) also matches 'public.orders' (prod) on database/shop-prod" in problem
    )
    staging["database"]["connection"] = "shop-staging"
    assert findings(tmp_path, data, rules.environment_overlap) == []


@pytest.mark.parametrize("delay", [0, "30s"])
def test_a_delete_needs_a_delay(tmp_path: Path, delay: object) -> None:
    data = scope_data()
    data["tiers"]["delete"]["approval"]["delay"] = delay
    (problem,) = findings(tmp_path, data, rules.delete_delay)
    assert "a delete waits at least 1m after its last approval" in problem
    data["tiers"]["delete"]["approval"]["delay"] = "1m"
    assert findings(tmp_path, data, rules.delete_delay) == []


def test_the_delay_floor_is_configurable(tmp_path: Path) -> None:
    ctx = LintContext(iam=lint_context().iam, min_delete_delay_seconds=900)
    data = scope_data()
    data["tiers"]["delete"]["approval"]["delay"] = "10m"
    (problem,) = findings(tmp_path, data, rules.delete_delay, ctx)
    assert "at least 15m" in problem


def test_a_policy_variable_is_named_as_one(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["read"]["aws"][0]["resources"] = ["arn:aws:s3:::shop-${env}/${aws:username}/*"]
    found = reasons(write_scope(tmp_path, data))
    assert any("'${aws:username}' is an IAM policy variable" in p for p in found), found
