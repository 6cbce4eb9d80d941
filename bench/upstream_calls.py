"""The upstream calls the broker makes for an uncached read, made without the broker.

Shared by the issuance benchmark's two reference arms: the direct call (in the benchmark's
own process) and the forwarder (`bench.forwarder`, a Flask app under gunicorn that makes the
same call per HTTP request). The parameters mirror the broker's issuers: a Vault token
through the `broker-tier` token role with the tier's policy, TTLs and metadata; AssumeRole
of the tier role with the compiled session policy, SourceIdentity and session tags; a
database login from Vault's database engine, from a role made for the request with the
grant's SQL and the request's lifetime (the broker makes one per request and deletes it when
the login is revoked).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

import hvac

from broker.issuers.aws_sts import session_name
from broker.issuers.source_identity import source_identity
from broker.issuers.vault_token import TOKEN_ROLE

AGENT_PREFIX = "bench-agent-"
SERVICE = "bench"
VAULT_POLICY = f"broker-{SERVICE}-prod-read"

UpstreamCall = Callable[[int], dict[str, Any]]


def upstream_calls(
    vault: hvac.Client,
    sts: Any,
    role_arn: str,
    session_policy: str,
    database_grant: Mapping[str, Any],
) -> dict[str, UpstreamCall]:
    """One call per backend; ``i`` makes each call's agent and request id distinct.

    Each returns the parts of the answer an agent would be handed (so the forwarder's JSON
    body is about the size of the broker's).
    """

    def token(i: int) -> dict[str, Any]:
        auth = vault.auth.token.create(
            role_name=TOKEN_ROLE,
            policies=[VAULT_POLICY],
            no_default_policy=True,
            ttl="900s",
            explicit_max_ttl="900s",
            renewable=False,
            num_uses=0,
            display_name=f"broker-{SERVICE}-read",
            meta={
                "agent": f"agent:{AGENT_PREFIX}{i}",
                "service": SERVICE,
                "environment": "prod",
                "tier": "read",
                "request_id": f"req_direct{i}",
            },
        )["auth"]
        return {"token": auth["client_token"], "accessor": auth["accessor"]}

    def assume(i: int) -> dict[str, Any]:
        agent = f"agent:{AGENT_PREFIX}{i}"
        credentials = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=session_name(agent, f"req_direct{i:010d}"),
            DurationSeconds=900,
            Policy=session_policy,
            SourceIdentity=source_identity(agent),
            Tags=[
                {"Key": "broker:service", "Value": SERVICE},
                {"Key": "broker:environment", "Value": "prod"},
                {"Key": "broker:tier", "Value": "read"},
                {"Key": "broker:request-id", "Value": f"req_direct{i}"},
                {"Key": "broker:agent", "Value": agent},
            ],
        )["Credentials"]
        return {
            "access_key_id": credentials["AccessKeyId"],
            "secret_access_key": credentials["SecretAccessKey"],
            "session_token": credentials["SessionToken"],
            "expiration": credentials["Expiration"].isoformat(),
        }

    def database(i: int) -> dict[str, Any]:
        role = f"broker-req-direct{i}-{secrets.token_hex(4)}"
        vault.secrets.database.create_role(
            name=role,
            db_name=database_grant["connection"],
            creation_statements=list(database_grant["creation_statements"]),
            revocation_statements=list(database_grant["revocation_statements"]),
            default_ttl=900,
            max_ttl=900,
            mount_point=database_grant["mount"],
        )
        data = vault.secrets.database.generate_credentials(
            name=role, mount_point=database_grant["mount"]
        )["data"]
        return {"username": data["username"], "password": data["password"]}

    return {"vault": token, "aws": assume, "database": database}
