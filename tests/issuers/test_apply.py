"""`broker scopes apply` against real IAM (moto) and Vault (OpenBao)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.apply.desired import PERMISSIONS_POLICY_NAME
from broker.policy.compiler import vault_policy_name
from tests.fixtures.backends import Backends
from tests.fixtures.broker import make_broker
from tests.fixtures.cli import run_cli


def test_plan_changes_nothing_without_yes(backends: Backends) -> None:
    lines = backends.apply(yes=False)
    text = "\n".join(lines)
    assert f"+ create role arn:aws:iam::123456789012:role/broker/{backends.name}-prod-read" in text
    assert f"+ create policy {vault_policy_name(backends.name, 'prod', 'write')}" in text
    assert f"+ create database role {backends.db_mount}/{backends.name}-prod-delete" in text
    assert lines[-1] == "Nothing was changed. Run again with --yes to apply this plan."
    iam = backends.admin("iam")
    names = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert f"{backends.name}-prod-read" not in names
    policies = backends.vault_client.sys.list_acl_policies()["data"]["keys"]
    assert vault_policy_name(backends.name, "prod", "read") not in policies


def test_apply_writes_roles_policies_and_database_roles(backends: Backends) -> None:
    lines = backends.apply(yes=True)
    assert lines[-1].startswith("Applied ")
    iam = backends.admin("iam")
    role = iam.get_role(RoleName=f"{backends.name}-prod-write")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::123456789012:user/broker"}
    assert trust["Statement"][0]["Condition"] == {"StringLike": {"sts:SourceIdentity": "*"}}
    assert role["MaxSessionDuration"] == 3600
    document = iam.get_role_policy(
        RoleName=f"{backends.name}-prod-write", PolicyName=PERMISSIONS_POLICY_NAME
    )["PolicyDocument"]
    document = json.loads(document) if isinstance(document, str) else document
    compiled = backends.scope_set.compiled[backends.name]["prod"]["write"]["aws"]["role_policy"]
    assert document == compiled
    hcl = backends.vault_client.sys.read_acl_policy(
        name=vault_policy_name(backends.name, "prod", "read")
    )["data"]["policy"]
    assert f'path "secret/data/{backends.name}/prod/*"' in hcl
    role_data = backends.vault_client.secrets.database.read_role(
        name=f"{backends.name}-prod-read", mount_point=backends.db_mount
    )["data"]
    assert role_data["default_ttl"] == 3600
    assert any("GRANT SELECT ON TABLE" in s for s in role_data["creation_statements"])


def test_second_apply_has_nothing_to_change(backends: Backends) -> None:
    backends.apply(yes=True)
    lines = backends.apply(yes=True)
    assert lines == ["No changes: the upstreams already match the scopes."]


def test_apply_reports_drift_and_repairs_it(backends: Backends) -> None:
    backends.apply(yes=True)
    iam = backends.admin("iam")
    iam.put_role_policy(
        RoleName=f"{backends.name}-prod-read",
        PolicyName=PERMISSIONS_POLICY_NAME,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    lines = backends.apply(yes=False)
    text = "\n".join(lines)
    assert (
        "~ update permissions of role arn:aws:iam::123456789012:role/broker/"
        f"{backends.name}-prod-read" in text
    )
    assert '-      "Action": "s3:*",' in text
    backends.apply(yes=True)
    assert backends.apply(yes=True) == ["No changes: the upstreams already match the scopes."]


PEOPLE = ("alice", "bob", "carol", "dave")


def test_check_says_what_is_missing_upstream_and_issuance_points_there(
    backends: Backends,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text(
        f"scopes_dir: {backends.scopes_dir}\nstate_dir: {tmp_path / 'state'}\n"
        f"aws: {{endpoint_url: '{backends.moto.url}'}}\nvault: {{url: '{backends.bao.url}'}}\n"
        + "approvers:\n"
        + "".join(f"  {n}: {{name: {n}, email: {n}@example.com}}\n" for n in PEOPLE)
        + "groups:\n  sre-oncall: [carol, dave]\n"
    )
    monkeypatch.setenv("BROKER_VAULT_TOKEN", backends.bao.root_token)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", backends.moto.broker_key["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backends.moto.broker_key["aws_secret_access_key"])
    check = ["scopes", "apply", "--check", "--config", str(config)]

    # The roles do not exist yet: issuing fails, and says where to look.
    broker = make_broker(tmp_path, real_issuers=backends.issuers)
    refused = broker.post(
        "/v1/credentials",
        {
            "service": backends.name,
            "environment": "prod",
            "region": "us-east-1",
            "tier": "read",
            "backend": "aws",
        },
        agent="shop-bot",
    )
    assert refused.status_code == 503, refused.json
    role = f"arn:aws:iam::123456789012:role/broker/{backends.name}-prod-read"
    assert f"assuming {role}: the role may not exist yet" in refused.json["message"]
    assert "`broker scopes apply --check`" in refused.json["message"]

    code, out, err = run_cli(capsys, *check)
    assert code == 3, out + err
    assert f"+ create role {role}" in out
    assert "Out of date: " in out and " missing upstream" in out
    assert "Nothing was changed" not in out
    assert [r["RoleName"] for r in backends.admin("iam").list_roles()["Roles"]].count(
        f"{backends.name}-prod-read"
    ) == 0  # --check changed nothing

    backends.apply(yes=True)
    code, out, err = run_cli(capsys, *check)
    assert code == 0, out + err
    assert out.strip() == "No changes: the upstreams already match the scopes."
    code, _, err = run_cli(capsys, *check, "--yes")
    assert code == 1 and "--check changes nothing" in err
