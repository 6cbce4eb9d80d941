"""Each fail-closed lint rule with a failing and a passing example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from broker.policy.destructive import is_destructive
from broker.policy.iam_actions import iam_database
from broker.scopes import lint as rules
from broker.scopes.lint import LintContext, lint
from tests.scopes.factory import lint_context, load_ok, scope_data, write_scope


def findings(
    tmp_path: Path, data: dict[str, Any], rule: rules.Rule, ctx: LintContext | None = None
) -> list[str]:
    loaded = load_ok(write_scope(tmp_path, data))
    return [str(p) for p in lint(loaded, ctx or lint_context(), rules=[rule])]


def with_statement(tier: str, actions: list[str], resources: list[str]) -> dict[str, Any]:
    data = scope_data()
    data["tiers"][tier]["aws"].append({"actions": actions, "resources": resources})
    return data


OBJECTS = ["arn:aws:s3:::shop-${env}-data/*"]


def test_base_scope_passes_every_rule(tmp_path: Path) -> None:
    loaded = load_ok(write_scope(tmp_path, scope_data()))
    assert lint(loaded, lint_context()) == []


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("nosuch:GetThing", "unknown AWS service prefix 'nosuch'"),
        ("s3:GetTheMoon", "'s3:GetTheMoon' matches no IAM action"),
        ("s3:Zz*", "matches no IAM action"),
    ],
)
def test_unknown_actions(tmp_path: Path, action: str, expected: str) -> None:
    problems = findings(tmp_path, with_statement("read", [action], OBJECTS), rules.known_actions)
    assert len(problems) == 1 and expected in problems[0]
    assert "[unknown-action]" in problems[0]


@pytest.mark.parametrize(
    ("action", "suggestion"),
    [
        ("s3:PutObjekt", "did you mean 's3:PutObject'?"),
        ("s3:getobjekt", "did you mean 's3:GetObject'?"),
        ("dynamodb:GetIten", "did you mean 'dynamodb:GetItem'?"),
        ("dynamdb:GetItem", "unknown AWS service prefix 'dynamdb'; did you mean 'dynamodb'?"),
        ("cloudformaton:DescribeStacks", "did you mean 'cloudformation'?"),
    ],
)
def test_a_mistyped_action_or_service_gets_the_closest_real_name(
    tmp_path: Path, action: str, suggestion: str
) -> None:
    [problem] = findings(tmp_path, with_statement("read", [action], OBJECTS), rules.known_actions)
    assert suggestion in problem


@pytest.mark.parametrize("action", ["s3:GetTheMoon", "reprots:GetReport", "s3:Zz*"])
def test_no_suggestion_when_nothing_is_close(tmp_path: Path, action: str) -> None:
    [problem] = findings(tmp_path, with_statement("read", [action], OBJECTS), rules.known_actions)
    assert "did you mean" not in problem


def test_known_actions_pass_case_insensitively(tmp_path: Path) -> None:
    data = with_statement("read", ["s3:getobject", "s3:Get*"], OBJECTS)
    assert findings(tmp_path, data, rules.known_actions) == []


@pytest.mark.parametrize("action", ["s3:DeleteObject", "s3:PutObject", "s3:*", "dynamodb:*Item"])
def test_read_tier_refuses_non_read_actions(tmp_path: Path, action: str) -> None:
    problems = findings(
        tmp_path, with_statement("read", [action], OBJECTS), rules.read_access_level
    )
    assert len(problems) == 1
    assert "read allows only List and Read" in problems[0]


def test_read_tier_accepts_wildcards_that_expand_to_read_actions(tmp_path: Path) -> None:
    data = with_statement("read", ["s3:GetObject*", "dynamodb:Describe*", "s3:ListBucket"], OBJECTS)
    assert findings(tmp_path, data, rules.read_access_level) == []


def test_read_access_level_problem_points_at_the_action(tmp_path: Path) -> None:
    path = write_scope(
        tmp_path, with_statement("read", ["s3:GetObject", "s3:DeleteObject"], OBJECTS)
    )
    loaded = load_ok(path)
    [problem] = lint(loaded, lint_context(), rules=[rules.read_access_level])
    line = path.read_text().splitlines()[problem.line - 1]
    assert line.strip() == "- s3:DeleteObject"


@pytest.mark.parametrize(
    ("tier", "action"),
    [("write", "s3:Put*"), ("delete", "s3:Delete*"), ("write", "s3:*"), ("read", "*")],
)
def test_wildcard_actions_refused(tmp_path: Path, tier: str, action: str) -> None:
    problems = findings(tmp_path, with_statement(tier, [action], OBJECTS), rules.wildcard_actions)
    assert len(problems) == 1 and "wildcard action" in problems[0]


def test_named_actions_pass_the_wildcard_rule(tmp_path: Path) -> None:
    data = with_statement("write", ["s3:PutObjectTagging"], OBJECTS)
    assert findings(tmp_path, data, rules.wildcard_actions) == []


@pytest.mark.parametrize(
    ("tier", "action", "resource"),
    [
        ("write", "s3:PutObject", "*"),
        ("write", "s3:PutObject", "arn:aws:s3:::*"),
        ("delete", "s3:DeleteObject", "arn:aws:s3:::*/*"),
        ("write", "dynamodb:PutItem", "arn:aws:dynamodb:${region}:${account}:table/*"),
        ("write", "dynamodb:PutItem", "arn:aws:dynamodb:*:${account}:table/shop-${env}"),
        ("read", "s3:GetObject", "*"),
    ],
)
def test_wildcard_resources_refused(tmp_path: Path, tier: str, action: str, resource: str) -> None:
    problems = findings(
        tmp_path, with_statement(tier, [action], [resource]), rules.wildcard_resources
    )
    assert len(problems) == 1 and "[wildcard-resource]" in problems[0]


def test_star_resource_allowed_in_read_for_actions_without_resources(tmp_path: Path) -> None:
    data = with_statement("read", ["s3:ListAllMyBuckets", "dynamodb:ListTables"], ["*"])
    assert findings(tmp_path, data, rules.wildcard_resources) == []


def test_object_wildcards_inside_a_named_bucket_pass(tmp_path: Path) -> None:
    data = with_statement("write", ["s3:PutObject"], ["arn:aws:s3:::shop-${env}-data/uploads/*"])
    assert findings(tmp_path, data, rules.wildcard_resources) == []


@pytest.mark.parametrize(
    ("action", "why"),
    [
        ("s3:DeleteObject", "its verb destroys"),
        ("cloudformation:DeleteStack", "its verb destroys"),
        ("dynamodb:DeleteTable", "its verb destroys"),
        ("ec2:TerminateInstances", "its verb destroys"),
        ("rds:DeleteDBInstance", "its verb destroys"),
        ("ecr:BatchDeleteImage", "its verb destroys"),
        ("s3:PutLifecycleConfiguration", "expiration rule deletes"),
        ("kms:ScheduleKeyDeletion", "unreadable"),
    ],
)
def test_destructive_actions_refused_outside_delete(tmp_path: Path, action: str, why: str) -> None:
    problems = findings(
        tmp_path,
        with_statement("write", [action], ["arn:aws:s3:::shop-${env}-x"]),
        rules.destructive_outside_delete,
    )
    assert len(problems) == 1
    assert "it belongs in tier delete" in problems[0] and why in problems[0]


@pytest.mark.parametrize("action", ["s3:*", "s3:Delete*", "dynamodb:*Item"])
def test_a_destructive_wildcard_is_summarised_within_its_own_service(
    tmp_path: Path, action: str
) -> None:
    [problem] = findings(
        tmp_path,
        with_statement("write", [action], ["arn:aws:s3:::shop-${env}-x"]),
        rules.destructive_outside_delete,
    )
    destructive = sorted(
        i.full_name for i in iam_database().expand(action) if is_destructive(i.service, i.name)
    )
    assert f"'{action}' covers {len(destructive)} destructive action(s) (" in problem
    listed = problem.split("action(s) (", 1)[1].split(")", 1)[0].removesuffix(", ...")
    assert listed.split(", ") == destructive[:3]


def test_destructive_actions_pass_in_delete(tmp_path: Path) -> None:
    data = with_statement(
        "delete", ["cloudformation:DeleteStack", "s3:DeleteBucket"], ["arn:aws:s3:::shop-${env}-x"]
    )
    assert findings(tmp_path, data, rules.destructive_outside_delete) == []


def test_non_destructive_write_actions_pass(tmp_path: Path) -> None:
    data = with_statement(
        "write", ["s3:PutObject", "cloudformation:UpdateStack", "dynamodb:UpdateItem"], OBJECTS
    )
    assert findings(tmp_path, data, rules.destructive_outside_delete) == []


def test_pattern_matching_another_environment_is_refused(tmp_path: Path) -> None:
    data = with_statement("read", ["s3:GetObject"], ["arn:aws:s3:::shop-*/*"])
    problems = findings(tmp_path, data, rules.environment_overlap)
    assert len(problems) == 1
    assert (
        "'arn:aws:s3:::shop-*/*' (staging) also matches 'arn:aws:s3:::shop-prod-data/*'"
        in problems[0]
    )


def test_patterns_kept_apart_by_env_or_account_pass(tmp_path: Path) -> None:
    data = with_statement(
        "read", ["dynamodb:Query"], ["arn:aws:dynamodb:${region}:${account}:table/shared-*"]
    )
    assert findings(tmp_path, data, rules.environment_overlap) == []


@pytest.mark.parametrize(
    ("ttl", "ok"), [(899, False), (900, True), ("12h", True), ("12h1s", False)]
)
def test_ttl_bounds(tmp_path: Path, ttl: object, ok: bool) -> None:
    data = scope_data()
    data["tiers"]["write"]["ttl"] = ttl
    problems = findings(tmp_path, data, rules.ttl_bounds)
    assert (problems == []) is ok, problems


def test_delete_needs_two_approvals(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["delete"]["approval"]["required"] = 1
    problems = findings(tmp_path, data, rules.delete_approvals)
    assert len(problems) == 1 and "at least 2 distinct approvers" in problems[0]


def test_delete_with_one_approval_passes_with_a_visible_opt_out(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["delete"]["approval"].update(
        required=1, unsafe_single_approver="sandbox account, rebuilt nightly from code"
    )
    assert findings(tmp_path, data, rules.delete_approvals) == []


def test_a_destructive_cap_needs_intents_required(tmp_path: Path) -> None:
    data = scope_data()
    data["tiers"]["delete"]["max_destructive"] = 3
    problems = findings(tmp_path, data, rules.destructive_cap_needs_intent)
    assert len(problems) == 1
    assert "[destructive-cap-needs-intent]" in problems[0]
    assert "add 'intent: required' to the tier" in problems[0]
    data["tiers"]["delete"]["intent"] = "required"
    assert findings(tmp_path, data, rules.destructive_cap_needs_intent) == []


def test_delete_defaults_to_two_approvals(tmp_path: Path) -> None:
    data = scope_data()
    del data["tiers"]["delete"]["approval"]["required"]
    assert findings(tmp_path, data, rules.delete_approvals) == []
    loaded = load_ok(write_scope(tmp_path, data))
    approval = loaded.scope.tiers["delete"].approval
    assert approval is not None and approval.required == 2 and not approval.allow_slack_approval


class Directory:
    def has_approver(self, name: str) -> bool:
        return name in ("alice", "bob")

    def has_group(self, name: str) -> bool:
        return name == "sre"

    def has_issuer(self, name: str) -> bool:
        return name in ("local", "ci")

    def approvers_for(self, names: tuple[str, ...], groups: tuple[str, ...]) -> set[str]:
        known = {n for n in names if self.has_approver(n)}
        return known | ({"alice", "bob"} if "sre" in groups else set())


def test_approvers_and_groups_must_exist_in_config(tmp_path: Path) -> None:
    ctx = LintContext(iam=lint_context().iam, directory=Directory())
    assert findings(tmp_path, scope_data(), rules.approvals_satisfiable, ctx) == []
    data = scope_data()
    data["tiers"]["write"]["approval"]["approvers"] = ["mallory"]
    data["tiers"]["delete"]["approval"]["groups"] = ["nobody"]
    problems = findings(tmp_path, data, rules.approvals_satisfiable, ctx)
    joined = "\n".join(problems)
    assert len(problems) == 4
    assert "approver 'mallory' is not defined" in joined
    assert "tier write requires 1 distinct approvals but only 0" in joined
    assert "group 'nobody' is not defined" in joined
    assert "tier delete requires 2 distinct approvals but only 0" in joined


def test_approvals_need_enough_distinct_approvers(tmp_path: Path) -> None:
    ctx = LintContext(iam=lint_context().iam, directory=Directory())
    data = scope_data()
    data["tiers"]["delete"]["approval"] = {"approvers": ["alice"], "required": 2}
    problems = findings(tmp_path, data, rules.approvals_satisfiable, ctx)
    assert len(problems) == 1 and "[unsatisfiable-approval]" in problems[0]


def test_every_environment_needs_a_role_per_tier(tmp_path: Path) -> None:
    data = scope_data()
    del data["environments"]["staging"]["aws"]["roles"]["delete"]
    data["environments"]["prod"]["aws"]["roles"]["write"] = "arn:aws:iam::999999999999:role/x"
    problems = findings(tmp_path, data, rules.backends_complete)
    assert any("staging has no aws role for tier delete" in p for p in problems)
    assert any("role for write is in account 999999999999" in p for p in problems)


def test_session_policy_must_fit_sts_limit(tmp_path: Path) -> None:
    from broker.scopes.registry import load_scope_set

    data = scope_data()
    data["tiers"]["read"]["aws"].append(
        {
            "actions": ["s3:GetObject"],
            "resources": [f"arn:aws:s3:::shop-${{env}}-archive-{i:03d}/*" for i in range(60)],
        }
    )
    write_scope(tmp_path, data)
    result = load_scope_set(tmp_path, lint_context())
    assert len(result.problems) == 1 and not result.scope_set.scopes
    problem = result.problems[0]
    assert (
        "STS accepts at most 2048" in problem.reason and "[session-policy-size]" in problem.reason
    )
    assert Path(problem.path).read_text().splitlines()[problem.line - 1].strip() == "ttl: 1h"


def test_a_requesters_issuer_must_be_configured(tmp_path: Path) -> None:
    ctx = LintContext(iam=lint_context().iam, directory=Directory())
    data = scope_data()
    data["requesters"] = [{"subject": "agent:a", "issuer": "ci"}, {"subject": "x", "issuer": "gh"}]
    (problem,) = findings(tmp_path, data, rules.requester_issuers, ctx)
    assert "issuer 'gh' is not configured" in problem and "[unknown-issuer]" in problem
