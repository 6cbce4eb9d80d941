"""Database credentials: a dynamic PostgreSQL login from Vault's database secrets engine.

The tier's Vault database role holds the creation statements the compiler produced (read:
SELECT; write: + INSERT, UPDATE; delete: + DELETE, TRUNCATE and the owner role for DROP),
so the login Vault creates has exactly those grants. The lease id is recorded: revoking it
makes Vault run the revocation statements, which drop the login.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from broker.errors import UpstreamUnavailable
from broker.issuers.base import IssuedCredential, IssueRequest
from broker.issuers.vault_common import VaultCaller, json_answer
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
        database = request.environment.database
        if database is None or request.tier not in database.roles:
            raise UpstreamUnavailable("this environment has no database role for the tier", BACKEND)
        role = database.roles[request.tier]
        issued_at = self.clock()
        response = json_answer(
            self.caller(
                lambda client: client.secrets.database.generate_credentials(
                    name=role, mount_point=database.mount
                )
            ),
            BACKEND,
        )
        data = response.get("data") or {}
        lease_id = response.get("lease_id")
        username, password = data.get("username"), data.get("password")
        if not username or not password or not lease_id:
            raise UpstreamUnavailable("Vault returned incomplete database credentials", BACKEND)
        lease = int(response.get("lease_duration") or request.duration_seconds)
        public = {
            "username": username,
            "lease_id": lease_id,
            **self._connection_info(database.mount, database.connection),
        }
        return IssuedCredential(
            backend=BACKEND,
            expires_at=issued_at + lease,
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
        if not record.lease_id:
            return
        lease_id = record.lease_id

        def revoke(client: Any) -> Any:
            return client.sys.revoke_lease(lease_id=lease_id)

        self.caller(revoke)

    def check(self) -> None:
        self.caller.check()
