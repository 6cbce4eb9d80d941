"""Vault tokens: an orphan token carrying only the tier's ACL policy, for the tier's TTL.

Created through a token role (``broker-tier``, which `broker scopes apply` maintains): orphan,
so revoking the broker's own token does not cascade unexpectedly, and Vault itself refuses
any policy outside ``broker-*``, so the broker's token needs no sudo; ``explicit_max_ttl``
pins the tier's maximum even if the agent renews; ``num_uses`` when the scope asks for it;
metadata names the agent, scope and request for Vault's own audit device. The accessor is
recorded for revocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from broker.errors import UpstreamUnavailable
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.issuers.vault_common import VaultCaller, json_answer
from broker.policy.compiler import vault_policy_name
from broker.store.records import IssuedRecord

BACKEND = "vault"
TOKEN_ROLE = "broker-tier"
TOKEN_ROLE_SETTINGS = {
    "allowed_policies_glob": ["broker-*"],
    "disallowed_policies": ["root"],
    "orphan": True,
    "renewable": True,
    "token_no_default_policy": True,
}


class VaultTokenIssuer:
    backend = BACKEND

    def __init__(
        self,
        caller: VaultCaller,
        public_address: str,
        token_role: str | None = TOKEN_ROLE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.caller = caller
        self.public_address = public_address  # the address agents use to reach Vault
        self.token_role = token_role or None
        self.clock = clock

    def issue(self, request: IssueRequest) -> IssuedCredential:
        if request.environment.vault is None:
            raise UpstreamUnavailable("this environment has no Vault paths", BACKEND)
        tier = request.scope.tiers[request.tier]
        policy = vault_policy_name(request.scope.service, request.environment.name, request.tier)
        agent = request.identity.subject

        def create(client: Any) -> Any:
            # Through the token role: orphan, and Vault itself refuses any policy outside
            # broker-*; without one, create-orphan (which needs sudo on the broker's token).
            make = (
                partial(client.auth.token.create, role_name=self.token_role)
                if self.token_role
                else client.auth.token.create_orphan
            )
            return make(
                policies=[policy],
                no_default_policy=True,
                ttl=f"{request.duration_seconds}s",
                explicit_max_ttl=f"{tier.ttl_seconds}s",
                renewable=True,
                num_uses=tier.vault_num_uses,
                display_name=f"broker-{request.scope.service}-{request.tier}"[:60],
                meta={
                    "agent": agent[:256],
                    "service": request.scope.service,
                    "environment": request.environment.name,
                    "tier": request.tier,
                    "request_id": request.request_id,
                },
            )

        issued_at = self.clock()
        response = json_answer(self.caller(create), BACKEND)
        auth = response.get("auth") or {}
        token, accessor = auth.get("client_token"), auth.get("accessor")
        if not token or not accessor or auth.get("policies") is None:
            raise UpstreamUnavailable("Vault returned an incomplete token", BACKEND)
        if set(auth.get("policies") or []) - {policy}:
            # Never hand out a token carrying more than the tier's policy.
            self.caller(lambda client: client.auth.token.revoke_accessor(accessor))
            raise UpstreamUnavailable("Vault attached unexpected policies; token revoked", BACKEND)
        lease = int(auth.get("lease_duration") or request.duration_seconds)
        return IssuedCredential(
            backend=BACKEND,
            expires_at=issued_at + lease,
            secret={"token": token},
            public={"accessor": accessor, "vault_addr": self.public_address, "policies": policy},
        )

    def revoke(self, record: IssuedRecord) -> None:
        if not record.vault_accessor:
            return
        accessor = record.vault_accessor

        def revoke(client: Any) -> Any:
            return client.auth.token.revoke_accessor(accessor)

        self.caller(revoke)

    def check(self) -> None:
        self.caller.check()
