"""Nothing the broker minted goes unrecorded, and nothing it made for a request outlives it.

Every issuance writes its record before the upstream call (state ``minting``) and
completes it after (:mod:`broker.issuance`). A replica killed in between, or a store that
failed just then, leaves a write-ahead never completed, and perhaps a live credential no
record names. The reconciler (at start and periodically, on any replica, one at a time)
takes each write-ahead older than the longest an issuance can take and revokes what it may
have minted, by the request id every credential is tagged with:

- AWS: a deny for sessions tagged with those request ids, on their tier role (STS cannot
  revoke one session; the statement merges losslessly into the role's revocation policy);
- Vault: the request's own policy is deleted, and tokens whose metadata names the request
  are revoked (found by listing accessors);
- database: every lease under the request's own role is revoked (Vault drops the logins),
  then the role is deleted.

It also deletes each request's own Vault policy and database role once the credential they
were made for has ended (expired, or revoked), and never one whose request it has no record
of (another broker may share the Vault). Everything it does is audited (``reconcile``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from broker.audit.recorder import AuditRecorder
from broker.errors import BrokerError
from broker.guard.revocation_policy import REQUEST_KEY, Denial, cutoff_for
from broker.guard.role_denials import RoleDenials
from broker.issuers.aws_accounts import AwsAccounts, failure_reason
from broker.issuers.base import Issuer
from broker.issuers.vault_database import DatabaseIssuer
from broker.issuers.vault_token import VaultTokenIssuer
from broker.scopes.holder import ScopeHolder
from broker.store.base import AuditStore, IssuedStore, LockStore
from broker.store.records import IssuedRecord

log = logging.getLogger(__name__)

# A database role or Vault policy is deleted this long after its credential's end: Vault's
# own expiry revokes the lease with the role's statements first.
ENDED_GRACE_SECONDS = 60.0


class ReconcilerStore(IssuedStore, LockStore, AuditStore, Protocol):
    """Write-aheads to find and close, records to compare with upstream, one lock."""


@dataclass
class ReconcileReport:
    orphans_revoked: list[str] = field(default_factory=list)  # request ids
    cleaned: list[str] = field(default_factory=list)  # request ids whose documents went
    errors: list[str] = field(default_factory=list)


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class Reconciler:
    store: ReconcilerStore
    issuers: Mapping[str, Issuer]
    accounts: AwsAccounts | None
    scopes: ScopeHolder
    audit: AuditRecorder
    # How long an issuance may take from its write-ahead to its record (the upstream
    # deadline, and some): a younger write-ahead may still be completing.
    in_flight_seconds: float
    clock: Callable[[], float] = time.time

    def run(self) -> ReconcileReport:
        """One pass; safe on every replica at once (they take turns)."""
        report = ReconcileReport()
        with self.store.exclusive("reconciler"):
            now = self.clock()
            orphans = self.store.stale_intents(now - self.in_flight_seconds)
            self._orphans(orphans, now, report)
            self._ended(now, report)
        if report.orphans_revoked or report.errors:
            log.warning(
                "reconciler: %d orphan(s) revoked, %d error(s)",
                len(report.orphans_revoked),
                len(report.errors),
                extra={"errors": report.errors[:10]},
            )
        return report

    # -- credentials minted under a record never completed ------------------------------

    def _orphans(
        self, orphans: Sequence[IssuedRecord], now: float, report: ReconcileReport
    ) -> None:
        by_backend: dict[str, list[IssuedRecord]] = {}
        for record in orphans:
            by_backend.setdefault(record.backend, []).append(record)
        for backend, records in sorted(by_backend.items()):
            try:
                self._revoke(backend, records, now)
            except (BrokerError, ClientError, BotoCoreError) as e:
                reason = failure_reason(e)
                report.errors.append(f"{backend}: {reason}")
                for record in records:
                    self.audit.credential_event(
                        "reconcile", "failed", "broker", record, reason=reason
                    )
                continue
            self.store.mark_orphaned([r.id for r in records if r.id is not None], now)
            for record in records:
                report.orphans_revoked.append(record.request_id)
                self.audit.credential_event(
                    "reconcile",
                    "revoked",
                    "broker",
                    record,
                    reason="minted under a record never completed (the replica stopped or its "
                    "store failed mid-issuance): revoked",
                )

    def _revoke(self, backend: str, records: list[IssuedRecord], now: float) -> None:
        ids = {r.request_id for r in records}
        issuer = self.issuers.get(backend)
        if backend == "aws":
            if self.accounts is None:
                raise BrokerError("aws: not configured; sessions cannot be denied")
            denials = RoleDenials(self.accounts, self.store)
            roles: dict[str, set[str]] = {}
            for record in records:
                if record.role_arn:
                    roles.setdefault(record.role_arn, set()).add(record.request_id)
            cutoff = cutoff_for(now, self.in_flight_seconds)
            for role, requests in sorted(roles.items()):
                denials.deny(role, Denial(cutoff, REQUEST_KEY, frozenset(requests)), now)
        elif isinstance(issuer, VaultTokenIssuer):
            issuer.revoke_orphans(ids)
        elif isinstance(issuer, DatabaseIssuer):
            for record in records:
                mount = self._mount(record.service, record.environment)
                if mount is None:
                    raise BrokerError(f"database: no mount known for {record.service}")
                issuer.revoke_orphan(mount, record.request_id)
        elif issuer is not None:
            for record in records:
                issuer.revoke(record)  # what it can without the credential's ids

    # -- each request's own documents, once its credential ended ------------------------

    def _ended(self, now: float, report: ReconcileReport) -> None:
        vault = self.issuers.get("vault")
        if isinstance(vault, VaultTokenIssuer):
            self._clean(vault.request_artifacts, vault.delete_policy, now, report, "vault")
        database = self.issuers.get("database")
        if isinstance(database, DatabaseIssuer):
            for mount in self._mounts():
                listed = partial(database.request_artifacts, mount)
                delete = partial(database.delete_role, mount)
                self._clean(listed, delete, now, report, "database")

    def _clean(
        self,
        listed: Callable[[], list[str]],
        delete: Callable[[str], None],
        now: float,
        report: ReconcileReport,
        backend: str,
    ) -> None:
        try:
            request_ids = listed()
        except BrokerError as e:
            report.errors.append(f"{backend}: {e.message}")
            return
        for request_id in request_ids:
            records = self.store.issued_for_request(request_id)
            if not records or any(self._live(r, now) for r in records):
                continue  # in use, or not this broker's
            try:
                delete(request_id)
            except BrokerError as e:
                report.errors.append(f"{backend}: {e.message}")
                continue
            report.cleaned.append(request_id)
            self.audit.record(
                "reconcile",
                "cleaned",
                "broker",
                request_id=request_id,
                backend=backend,
                reason="the request's own document, its credential ended",
            )

    def _live(self, record: IssuedRecord, now: float) -> bool:
        if record.state == "minting":
            return True  # in flight, or an orphan this pass could not revoke
        ended = record.revoked_at if record.revoked_at is not None else record.expires_at
        return ended > now - ENDED_GRACE_SECONDS

    def _mounts(self) -> list[str]:
        return sorted(
            {
                env.database.mount
                for scope in self.scopes.current.scopes.values()
                for env in scope.environments.values()
                if env.database is not None
            }
        )

    def _mount(self, service: str, environment: str) -> str | None:
        scope = self.scopes.current.get(service)
        env = scope.environments.get(environment) if scope else None
        return env.database.mount if env and env.database else None
