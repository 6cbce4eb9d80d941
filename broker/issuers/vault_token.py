"""Vault tokens: an orphan, non-renewable token carrying only the request's ACL policy.

Created through a token role (``broker-tier``, which `broker scopes apply` maintains): orphan,
so revoking the broker's own token does not cascade unexpectedly, and Vault itself refuses
any policy outside ``broker-*``, so the broker's token needs no sudo. **Not renewable**: a
token lives exactly the TTL it was created with, which is what its record says, so the kill
switch (which looks at records not yet expired) always sees every live token. (On a token
role, Vault bounds renewal only by the role's own ``token_explicit_max_ttl``, not by the
``explicit_max_ttl`` given at creation: a renewable token could outlive its record.)
``num_uses`` when the scope asks for it; metadata names the agent, scope and request for
Vault's own audit device. The accessor is recorded for revocation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from hvac import exceptions as vault_errors

from broker.errors import UpstreamUnavailable
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.issuers.vault_common import VaultCaller, json_answer
from broker.policy.grant import REQUEST_PREFIX, request_artifact
from broker.store.records import IssuedRecord

BACKEND = "vault"
TOKEN_ROLE = "broker-tier"
TOKEN_ROLE_SETTINGS = {
    "allowed_policies_glob": ["broker-*"],
    "disallowed_policies": ["root"],
    "orphan": True,
    "renewable": False,
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
        grant = request.grant
        policy = grant.vault_tier_policy or request_artifact(request.request_id)
        if grant.vault_tier_policy is None:
            # The request's own policy (only its paths), made before the token and deleted
            # when the token is revoked or, once it ended, by the reconciler.
            text = grant.vault_policy or ""
            self.caller(
                lambda client: client.sys.create_or_update_acl_policy(name=policy, policy=text)
            )
        agent = request.identity.principal

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
                explicit_max_ttl=f"{request.duration_seconds}s",
                renewable=False,
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

        response = json_answer(self.caller(create), BACKEND)
        # Vault counts the TTL from its own receipt of the call: the end as seen after the
        # answer is never earlier than the token's.
        answered_at = self.clock()
        auth = response.get("auth") or {}
        token, accessor = auth.get("client_token"), auth.get("accessor")
        if not token or not accessor or auth.get("policies") is None:
            raise UpstreamUnavailable("Vault returned an incomplete token", BACKEND)
        lease = int(auth.get("lease_duration") or 0)
        problem = _unexpected(auth, policy, lease, request.duration_seconds)
        if problem:
            # Never hand out a token carrying more than asked, or living longer.
            self.caller(lambda client: client.auth.token.revoke_accessor(accessor))
            raise UpstreamUnavailable(f"Vault {problem}; token revoked", BACKEND)
        return IssuedCredential(
            backend=BACKEND,
            expires_at=answered_at + lease,
            secret={"token": token},
            public={"accessor": accessor, "vault_addr": self.public_address, "policies": policy},
        )

    def revoke(self, record: IssuedRecord) -> None:
        """Revoke the token, then delete the request's own policy (if it had one): a token
        whose policy is gone can do nothing, whatever its accessor. A token recorded with its
        tier's shared policy has none to delete; a record that does not say (written before
        the policy was recorded, or never completed) has its request's deleted to be sure."""
        accessor = record.vault_accessor

        def revoke(client: Any) -> Any:
            try:
                return client.auth.token.revoke_accessor(accessor)
            except vault_errors.InvalidRequest:
                return None  # "invalid accessor": the token already ended (expired)

        if accessor:
            self.caller(revoke)
        if record.vault_policy in (None, request_artifact(record.request_id)):
            self.delete_policy(record.request_id)

    def revoke_orphans(self, request_ids: set[str], scan_limit: int = 50_000) -> set[str]:
        """Revoke tokens minted for ``request_ids`` but never recorded (found by the
        ``request_id`` of their metadata), and delete those requests' policies; return the
        ids whose tokens were revoked. Lists accessors: ``sudo`` on auth/token/accessors."""
        for request_id in request_ids:
            self.delete_policy(request_id)
        listed = json_answer(
            self.caller(lambda client: client.auth.token.list_accessors()), BACKEND
        )
        found: set[str] = set()
        for accessor in ((listed.get("data") or {}).get("keys") or [])[:scan_limit]:
            meta = self._meta(accessor)
            if meta.get("request_id") in request_ids:
                self._revoke_accessor(accessor)
                found.add(str(meta["request_id"]))
        return found

    def _revoke_accessor(self, accessor: str) -> None:
        self.caller(lambda client: client.auth.token.revoke_accessor(accessor))

    def _meta(self, accessor: str) -> dict[str, Any]:
        try:
            answer = self.caller(lambda client: client.auth.token.lookup_accessor(accessor))
        except UpstreamUnavailable:
            return {}  # ended meanwhile
        data = (answer.get("data") or {}) if isinstance(answer, dict) else {}
        meta = data.get("meta") or {}
        return meta if isinstance(meta, dict) else {}

    def request_artifacts(self) -> list[str]:
        """Request ids whose own policy (broker-req-<id>) exists in Vault."""
        answer = json_answer(self.caller(lambda client: client.sys.list_acl_policies()), BACKEND)
        data = answer.get("data") or {}
        names = data.get("keys") or data.get("policies") or []
        return [n.removeprefix(REQUEST_PREFIX) for n in names if n.startswith(REQUEST_PREFIX)]

    def delete_policy(self, request_id: str) -> None:
        """Delete the policy made for ``request_id`` (nothing happens when there is none)."""
        name = request_artifact(request_id)
        self.caller(lambda client: client.sys.delete_acl_policy(name=name))

    def check(self) -> None:
        self.caller.check()


def _unexpected(auth: dict[str, Any], policy: str, lease: int, duration: int) -> str | None:
    """What is wrong with a token Vault created, if anything (fail closed)."""
    if set(auth.get("policies") or []) - {policy}:
        return "attached unexpected policies"
    if auth.get("renewable"):
        return "made the token renewable"
    if not 0 < lease <= duration:
        return f"gave the token a {lease} s lease for a {duration} s request"
    return None
