"""`broker scopes apply` against real IAM (moto) and Vault (OpenBao)."""

from __future__ import annotations

import json

from broker.apply.desired import PERMISSIONS_POLICY_NAME
from broker.policy.compiler import vault_policy_name
from tests.fixtures.backends import Backends


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
