"""The read tier, for the broker's own look before it grants: AWS clients holding a read
session of a request's scope.

Measuring an intent's impact and reading a change set back before executing it both look
at AWS with what the agent could read anyway, never with the broker's own identity: the
session is minted through :mod:`broker.issuance` (recorded, audited and revocable like any
other credential) and never leaves the broker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg
from botocore.config import Config

from broker.config import Settings
from broker.errors import BadRequest, Frozen
from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import STS_MIN_SECONDS, VAULT_MIN_SECONDS, ResolvedRequest
from broker.intent.impact_aws import ClientFactory
from broker.issuance import IssuanceService
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.policy.compiler import session_policy
from broker.policy.grant import compile_grant
from broker.policy.iam_actions import IamDatabase
from broker.store.records import FreezeRecord

# Every call races a deadline: fail fast rather than retry.
_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 1})


def aws_clients(credential: IssuedCredential, endpoint_url: str | None) -> ClientFactory:
    """boto3 clients holding ``credential`` (a read session), with short timeouts."""
    session = boto3.Session(
        aws_access_key_id=credential.public["access_key_id"],
        aws_secret_access_key=credential.secret["secret_access_key"],
        aws_session_token=credential.secret["session_token"],
    )
    make: Callable[..., Any] = session.client  # any service: boto3's stubs want literals

    def client(service: str, region: str) -> Any:
        return make(service, region_name=region, endpoint_url=endpoint_url, config=_CONFIG)

    return client


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class ReadAccess:
    settings: Settings
    issuance: IssuanceService
    iam: IamDatabase
    frozen: Callable[[str, str | None, str | None], FreezeRecord | None]
    clock: Callable[[], float] = time.time

    def aws(self, identity: AgentIdentity, resolved: ResolvedRequest) -> ClientFactory:
        """Clients with a read session of ``resolved``'s scope, environment and region.

        Raises :class:`Frozen` (403) when the agent or scope is frozen, and what minting
        raises (503 when STS cannot be reached).
        """
        region = resolved.request.region
        if resolved.request.backend != "aws" or region is None:
            raise BadRequest("this is not an aws request", "backend")
        policy = session_policy(resolved.scope, resolved.environment, region, "read", self.iam, ())
        credential = self._mint(identity, resolved, STS_MIN_SECONDS, policy)
        return aws_clients(credential, self.settings.aws.endpoint_url)

    def database(
        self, identity: AgentIdentity, resolved: ResolvedRequest
    ) -> Callable[[], psycopg.Connection[Any]]:
        """Connections as a read login of ``resolved``'s database (one login, minted now)."""
        if resolved.request.backend != "database":
            raise BadRequest("this is not a database request", "backend")
        login = self._mint(identity, resolved, VAULT_MIN_SECONDS, None)
        c = login.body()

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                host=c.get("host"),
                port=int(c.get("port") or 5432),
                dbname=c.get("database"),
                user=c["username"],
                password=c["password"],
                connect_timeout=3,
                autocommit=True,
            )

        return connect

    def _mint(
        self,
        identity: AgentIdentity,
        resolved: ResolvedRequest,
        duration: int,
        policy: Mapping[str, Any] | None,
    ) -> IssuedCredential:
        """The read tier's credential for the request's backend, recorded like any other."""
        request = resolved.request
        scope, env = resolved.scope, resolved.environment
        freeze = self.frozen(identity.principal, scope.service, env.name)
        if freeze is not None:
            raise Frozen(f"nothing is issued while {freeze.describe()} is frozen")
        read = IssueRequest(
            request_id=new_request_id(self.clock()),
            identity=identity,
            scope=scope,
            environment=env,
            region=request.region,
            tier="read",
            backend=request.backend,
            resources=(),
            grant=compile_grant(
                scope, env, "read", request.backend, request.region, (), duration, policy
            ),
        )
        return self.issuance.mint(read).credential
