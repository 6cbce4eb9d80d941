"""The upstream calls `broker scopes apply` makes: IAM roles and Vault policies/roles."""

from __future__ import annotations

import json
from typing import Any

import hvac
from botocore.exceptions import ClientError
from hvac import exceptions as vault_errors

from broker.apply.desired import DesiredRole
from broker.policy.compiler import DatabaseRole

MANAGED_TAG = {"Key": "managed-by", "Value": "credential-broker"}


class IamRoleManager:
    def __init__(self, iam: Any) -> None:
        self.iam = iam

    def get_role(self, name: str) -> dict[str, Any] | None:
        try:
            role: dict[str, Any] = self.iam.get_role(RoleName=name)["Role"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return None
            raise
        document = role.get("AssumeRolePolicyDocument")
        if isinstance(document, str):
            role["AssumeRolePolicyDocument"] = json.loads(document)
        return role

    def get_inline_policy(self, role: str, policy: str) -> dict[str, Any] | None:
        try:
            document = self.iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return None
            raise
        return json.loads(document) if isinstance(document, str) else dict(document)

    def create_role(self, role: DesiredRole, trust: dict[str, Any]) -> None:
        self.iam.create_role(
            Path=role.path,
            RoleName=role.name,
            AssumeRolePolicyDocument=json.dumps(trust),
            MaxSessionDuration=role.max_session_seconds,
            Description=f"credential broker: {role.scope}/{role.environment}/{role.tier}",
            Tags=[
                MANAGED_TAG,
                {"Key": "broker:service", "Value": role.scope},
                {"Key": "broker:environment", "Value": role.environment},
                {"Key": "broker:tier", "Value": role.tier},
            ],
        )

    def update_trust(self, role: str, trust: dict[str, Any]) -> None:
        self.iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust))

    def update_max_session(self, role: str, seconds: int) -> None:
        self.iam.update_role(RoleName=role, MaxSessionDuration=seconds)

    def put_inline_policy(self, role: str, policy: str, document: dict[str, Any]) -> None:
        self.iam.put_role_policy(
            RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document)
        )

    def delete_inline_policy(self, role: str, policy: str) -> None:
        try:
            self.iam.delete_role_policy(RoleName=role, PolicyName=policy)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise


class HvacVaultManager:
    def __init__(self, client: hvac.Client) -> None:
        self.client = client

    def read_token_role(self, name: str) -> dict[str, Any] | None:
        try:
            response = self.client.read(f"auth/token/roles/{name}")
        except vault_errors.InvalidPath:
            return None
        if not isinstance(response, dict):
            return None
        data: dict[str, Any] = response.get("data") or {}
        return data

    def write_token_role(self, name: str, settings: dict[str, Any]) -> None:
        self.client.write_data(f"auth/token/roles/{name}", data=settings)

    def read_policy(self, name: str) -> str | None:
        try:
            response = self.client.sys.read_acl_policy(name=name)
        except vault_errors.InvalidPath:
            return None
        data = response.get("data", response) if isinstance(response, dict) else {}
        policy = data.get("policy")
        return policy if isinstance(policy, str) else None

    def write_policy(self, name: str, policy: str) -> None:
        self.client.sys.create_or_update_acl_policy(name=name, policy=policy)

    def read_database_role(self, mount: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.client.secrets.database.read_role(name=name, mount_point=mount)
        except vault_errors.InvalidPath:
            return None
        data: dict[str, Any] = response.get("data", {})
        return data

    def write_database_role(self, role: DatabaseRole) -> None:
        self.client.secrets.database.create_role(
            name=role.name,
            db_name=role.db_name,
            creation_statements=list(role.creation_statements),
            revocation_statements=list(role.revocation_statements),
            default_ttl=role.default_ttl,
            max_ttl=role.max_ttl,
            mount_point=role.mount,
        )

    def connection_exists(self, mount: str, name: str) -> bool:
        try:
            self.client.secrets.database.read_connection(name=name, mount_point=mount)
        except vault_errors.InvalidPath:
            return False
        return True
