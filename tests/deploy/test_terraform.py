"""deploy/terraform, read as HCL: it parses, its modules are wired consistently, the tier
roles' trust admits only the broker with a SourceIdentity, and the broker-policy module
renders the same statements as deploy/iam/broker-policy.json."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import DEPLOY, load_hcl

TERRAFORM = DEPLOY / "terraform"
MODULES = TERRAFORM / "modules"
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
REFERENCE = re.compile(r"\b(var|module|local)\.([A-Za-z_][A-Za-z0-9_-]*)(?:\.([A-Za-z_]\w*))?")


def module_files(directory: Path) -> dict[str, dict[str, Any]]:
    return {path.name: load_hcl(path) for path in sorted(directory.glob("*.tf"))}


def blocks(parsed: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [block for data in parsed.values() for block in data.get(kind, [])]


def named(parsed: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    """Blocks with one label (variable, output, module) by name."""
    result: dict[str, Any] = {}
    for block in blocks(parsed, kind):
        result.update(block)
    return result


def resources(parsed: dict[str, dict[str, Any]], kind: str, rtype: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for block in blocks(parsed, kind):
        result.update(block.get(rtype, {}))
    return result


def references(directory: Path, kind: str) -> set[str]:
    text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    return {m.group(2) for m in REFERENCE.finditer(text) if m.group(1) == kind}


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_terraform_file_parses(path: Path) -> None:
    assert load_hcl(path), f"{path} is empty"


@pytest.mark.parametrize("module", sorted(p for p in MODULES.iterdir() if p.is_dir()))
def test_module_variables_are_declared_and_used(module: Path) -> None:
    parsed = module_files(module)
    declared = set(named(parsed, "variable"))
    used = references(module, "var")
    assert used - declared == set(), f"undeclared in {module.name}"
    assert declared - used == set(), f"declared but unused in {module.name}"
    for variable in named(parsed, "variable").values():
        assert variable.get("description"), "every input says what it is for"
    versions = parsed["versions.tf"]["terraform"][0]
    assert versions["required_version"].startswith(">=")
    assert versions["required_providers"][0]["aws"]["source"] == "hashicorp/aws"


def test_example_calls_each_module_with_its_inputs() -> None:
    example = TERRAFORM / "example"
    for name, call in named(module_files(example), "module").items():
        source = (example / call["source"]).resolve()
        assert source.is_dir(), f"module {name}: {call['source']} does not exist"
        parsed = module_files(source)
        variables = named(parsed, "variable")
        given = set(call) - {"source", "providers", "version", "count", "for_each", "depends_on"}
        assert given - set(variables) == set(), f"module {name} has no such input"
        required = {n for n, v in variables.items() if "default" not in v}
        assert required - given == set(), f"module {name} misses required inputs"
        outputs = set(named(parsed, "output"))
        text = (example / "main.tf").read_text()
        for used in re.findall(rf"module\.{name}\.(\w+)", text):
            assert used in outputs, f"module {name} has no output {used}"


@pytest.fixture(scope="module")
def tier_roles() -> dict[str, dict[str, Any]]:
    return module_files(MODULES / "tier-roles")


def statement_by_sid(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["sid"]: s for s in document["statement"]}


def test_tier_role_trust_admits_only_the_broker_and_requires_source_identity(
    tier_roles: dict[str, dict[str, Any]],
) -> None:
    trust = resources(tier_roles, "data", "aws_iam_policy_document")["trust"]
    statements = trust["statement"]
    for statement in statements:
        assert statement["effect"] == "Allow"
        (principal,) = statement["principals"]
        assert principal == {"type": "AWS", "identifiers": ["${var.broker_principal_arn}"]}
    assume = [s for s in statements if "sts:AssumeRole" in s["actions"]]
    assert len(assume) == 1
    (condition,) = assume[0]["condition"]
    # A missing key never matches StringLike "*", and Null=false demands it: either works.
    assert (condition["test"], condition["variable"], condition["values"]) in (
        ("StringLike", "sts:SourceIdentity", ["*"]),
        ("Null", "sts:SourceIdentity", ["false"]),
    )
    actions = {a for s in statements for a in s["actions"]}
    assert actions == {"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"}


def test_tier_roles_use_the_trust_bound_session_length_and_inline_policy(
    tier_roles: dict[str, dict[str, Any]],
) -> None:
    role = resources(tier_roles, "resource", "aws_iam_role")["tier"]
    assert role["assume_role_policy"] == "${data.aws_iam_policy_document.trust.json}"
    duration = role["max_session_duration"]
    assert "43200" in duration and "3600" in duration and "ttl_seconds" in duration
    assert role["for_each"] == "${local.roles}"
    inline = resources(tier_roles, "resource", "aws_iam_role_policy")["permissions"]
    # The name `broker scopes apply` uses, so both manage the same policy.
    assert inline["name"] == "broker-tier-permissions"
    assert inline["policy"] == "${each.value.role_policy}"
    assert "permissions_boundary" in role


def test_tier_roles_read_the_plan_json(tier_roles: dict[str, dict[str, Any]]) -> None:
    (locals_,) = blocks(tier_roles, "locals")
    assert locals_["plan"] == "${jsondecode(file(var.plan_file))}"
    for key in ("role_arn", "role_policy", "ttl_seconds"):
        assert f"compiled.aws.{key}" in locals_["tiers"] or f"compiled.{key}" in locals_["tiers"]


def test_kill_switch_role_reaches_only_tier_roles(tier_roles: dict[str, dict[str, Any]]) -> None:
    admin = resources(tier_roles, "data", "aws_iam_policy_document")["admin"]
    for statement in admin["statement"]:
        assert statement["resources"] == ["${local.tier_role_pattern}"]
    actions = {a for s in admin["statement"] for a in s["actions"]}
    assert actions == {"iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetRolePolicy"}
    (locals_,) = blocks(tier_roles, "locals")
    assert locals_["tier_role_pattern"].endswith(":role${var.tier_role_path}*")


def test_broker_policy_module_matches_the_plain_document() -> None:
    parsed = module_files(MODULES / "broker-policy")
    document = resources(parsed, "data", "aws_iam_policy_document")["broker"]
    rendered: dict[str, set[str]] = {}
    for statement in document["statement"]:
        rendered[statement["sid"]] = set(statement["actions"])
    for dynamic in document.get("dynamic", []):
        content = dynamic["statement"]["content"][0]
        rendered[content["sid"]] = set(content["actions"])
    plain = json.loads((DEPLOY / "iam" / "broker-policy.json").read_text())
    expected = {
        s["Sid"]: set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        for s in plain["Statement"]
    }
    # The example runs without an audit anchor; the module adds it for a given bucket, and
    # never anything that could delete or unlock an anchor.
    anchor = rendered.pop("AuditAnchor")
    assert anchor == {
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:PutObject",
    }
    assert rendered == expected
