"""Database credentials: a dynamic PostgreSQL login from Vault's database secrets engine.

Each request gets a Vault database role of its own (``broker-req-<request id>``), made
from its grant just before the login: creation SQL granting the tier's privileges on the
tables the request named (delete: plus the scope's owner role, for DROP), and a lease whose
default and maximum TTL are the request's duration, so the login lives exactly what its
record says (its password is ``VALID UNTIL`` the same time). The lease id is recorded:
revoking it makes Vault run the role's revocation SQL, which drops the login; the role is
deleted after (or, once the lease ended, by the reconciler).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from hvac import exceptions as vault_errors

from broker.errors import UpstreamUnavailable
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.issuers.vault_common import VaultCaller, json_answer
from broker.policy.grant import REQUEST_PREFIX, request_artifact
from broker.store.records import IssuedRecord

BACKEND = "database"


class DatabaseIssuer:
    backend = BACKEND

    def __init__(self, caller: VaultCaller, clock: Callable[[], float] = time.time) -> None:
        self.caller = caller
        self.clock = clock
        self._connections: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def issue(self, request: IssueRequest) -> IssuedCredential:
        grant = request.grant.database
        if grant is None:
            raise UpstreamUnavailable("this environment has no database role for the tier", BACKEND)
        role = request_artifact(request.request_id)
        ttl = request.duration_seconds

        def create_role(client: Any) -> Any:
            return client.secrets.database.create_role(
                name=role,
                db_name=grant.connection,
                creation_statements=list(grant.creation_statements),
                revocation_statements=list(grant.revocation_statements),
                default_ttl=ttl,
                max_ttl=ttl,
                mount_point=grant.mount,
            )

        self.caller(create_role)
        response = json_answer(
            self.caller(
                lambda client: client.secrets.database.generate_credentials(
                    name=role, mount_point=grant.mount
                )
            ),
            BACKEND,
        )
        # Vault counts the lease from its own receipt of the call (delayed on the way, or
        # retried): the end as seen after the answer is never earlier than the lease's.
        answered_at = self.clock()
        data = response.get("data") or {}
        lease_id = response.get("lease_id")
        username, password = data.get("username"), data.get("password")
        if not username or not password or not lease_id:
            raise UpstreamUnavailable("Vault returned incomplete database credentials", BACKEND)
        lease = int(response.get("lease_duration") or 0)
        if not 0 < lease <= ttl:
            self.caller(lambda client: client.sys.revoke_lease(lease_id=lease_id))
            raise UpstreamUnavailable(
                f"Vault gave the login a {lease} s lease for a {ttl} s request; revoked", BACKEND
            )
        public = {
            "username": username,
            "lease_id": lease_id,
            **self._connection_info(grant.mount, grant.connection),
        }
        return IssuedCredential(
            backend=BACKEND,
            expires_at=answered_at + lease,
            secret={"password": password},
            public=public,
        )

    def _connection_info(self, mount: str, connection: str) -> dict[str, str]:
        """host, port and database of the connection (from its URL template, cached)."""
        key = (mount, connection)
        with self._lock:
            cached = self._connections.get(key)
        if cached is not None:
            return cached

        def read(client: Any) -> Any:
            return client.secrets.database.read_connection(name=connection, mount_point=mount)

        try:
            response = json_answer(self.caller(read), BACKEND)
        except UpstreamUnavailable:
            return {}
        url = (response.get("data") or {}).get("connection_details", {}).get("connection_url", "")
        info: dict[str, str] = {}
        if url:
            parts = urlsplit(url.replace("{{username}}", "u").replace("{{password}}", "p"))
            info = {
                "host": parts.hostname or "",
                "port": str(parts.port or 5432),
                "database": parts.path.lstrip("/"),
            }
        with self._lock:
            self._connections[key] = info
        return info

    def revoke(self, record: IssuedRecord) -> None:
        """Revoke the lease (Vault drops the login), then delete the request's role."""
        if not record.lease_id:
            return
        lease_id = record.lease_id

        def revoke(client: Any) -> Any:
            return client.sys.revoke_lease(lease_id=lease_id)

        self.caller(revoke)
        mount = lease_id.split("/creds/", 1)[0]
        self.delete_role(mount, record.request_id)

    def revoke_orphan(self, mount: str, request_id: str) -> None:
        """Revoke every lease under the role made for ``request_id`` (a login minted but
        never recorded), then delete the role. ``sudo`` on sys/leases/revoke-prefix."""
        prefix = f"{mount}/creds/{request_artifact(request_id)}"
        self.caller(lambda client: client.sys.revoke_prefix(prefix=prefix))
        self.delete_role(mount, request_id)

    def request_artifacts(self, mount: str) -> list[str]:
        """Request ids whose own role (broker-req-<id>) exists on ``mount``."""

        def listed(client: Any) -> Any:
            try:
                return client.secrets.database.list_roles(mount_point=mount)
            except vault_errors.InvalidPath:
                return {}  # no role at all

        answer = json_answer(self.caller(listed), BACKEND)
        names = (answer.get("data") or {}).get("keys") or []
        return [n.removeprefix(REQUEST_PREFIX) for n in names if n.startswith(REQUEST_PREFIX)]

    def delete_role(self, mount: str, request_id: str) -> None:
        """Delete the role made for ``request_id`` (nothing happens when there is none)."""
        name = request_artifact(request_id)
        self.caller(
            lambda client: client.secrets.database.delete_role(name=name, mount_point=mount)
        )

    def check(self) -> None:
        self.caller.check()
