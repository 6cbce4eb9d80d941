"""The kill switch: cut an agent (a scope, a request, or everything) off, everywhere, now.

In order: freeze the target (nothing new is issued, on any replica, within a second), revoke
what was issued (Vault tokens by accessor, database leases by id -- Vault drops the logins,
AWS sessions by an inline deny on each affected tier role for sessions issued before now),
evict cached credentials, cancel pending requests, alert, audit. It reports, per backend,
what it did and what it could not reach; it never hides a failure, and a Slack outage does
not stop it.

AWS has no call to revoke one STS session. The documented way is a Deny for sessions whose
``aws:TokenIssueTime`` is before a cut-off; narrowed by ``aws:SourceIdentity`` (an agent) or
the ``broker:request-id`` session tag (a request) so other agents on the same role keep
working. The cut-off is never earlier than the revocation and covers sessions other replicas
mint while they have not seen the freeze yet (:func:`revocation_policy.cutoff_for`); how the
statements are written without losing one or outgrowing IAM's quota is
:mod:`broker.guard.role_denials` and :mod:`broker.guard.revocation_policy`.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Unpack

from botocore.exceptions import BotoCoreError, ClientError

from broker.audit.recorder import AuditRecorder
from broker.cache import CredentialCache
from broker.errors import BadRequest, BrokerError
from broker.guard.fanout import DEFAULT_CONCURRENCY, Attempt, attempt_each
from broker.guard.guard import FREEZE_CACHE_SECONDS, Guard
from broker.guard.revocation_policy import (
    AGENT_KEY,
    REQUEST_KEY,
    REVOCATION_POLICY_NAME,
    Compacted,
    Denial,
    cutoff_for,
)
from broker.guard.revocation_report import BackendOutcome, RevocationReport
from broker.guard.role_denials import RoleDenials
from broker.identity.model import parse_principal
from broker.identity.requesters import may_be_requested_by
from broker.issuers.aws_accounts import AwsAccounts, failure_reason
from broker.issuers.base import Issuer
from broker.issuers.source_identity import legacy_source_identity, source_identity
from broker.metrics import Metrics
from broker.notify.base import NotificationFailed, Notifier
from broker.policy.globs import substitute
from broker.scopes.model import Scope
from broker.store.base import FreezeStore, IssuedStore, LockStore
from broker.store.records import AuditRecord, FreezeRecord, IssuedRecord, Reach

if TYPE_CHECKING:
    from broker.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "REVOCATION_POLICY_NAME",
    "KillSwitch",
    "RevocationReport",
    "RevokeTarget",
    "Unfrozen",
]


@dataclass(frozen=True)
class RevokeTarget:
    """Exactly one of: an agent, a service (optionally one environment), a request, all."""

    agent: str | None = None
    service: str | None = None
    environment: str | None = None
    request_id: str | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        chosen = sum(x is not None for x in (self.agent, self.service, self.request_id))
        chosen += int(self.everything)
        if chosen != 1:
            raise BadRequest("name exactly one of: an agent, a service, a request, or all")
        if self.environment is not None and self.service is None:
            raise BadRequest("an environment narrows a service: name the service too")
        if self.agent is not None:
            try:
                parse_principal(self.agent)
            except ValueError as e:
                raise BadRequest(str(e), "agent") from None

    def describe(self) -> str:
        if self.agent is not None:
            return f"agent {self.agent}"
        if self.service is not None:
            return f"service {self.service}" + (f"/{self.environment}" if self.environment else "")
        if self.request_id is not None:
            return f"request {self.request_id}"
        return "everything"

    def reach(self) -> Reach:
        """The requests and issued credentials the target reaches (everything: all None)."""
        return Reach(
            agent_subject=self.agent,
            service=self.service,
            environment=self.environment,
            request_id=self.request_id,
        )

    def freeze(self, reason: str, actor: str, now: float) -> FreezeRecord | None:
        if self.agent is not None:
            return FreezeRecord("agent", self.agent, reason, actor, now)
        if self.service is not None:
            target = self.service + (f"/{self.environment}" if self.environment else "")
            return FreezeRecord("scope", target, reason, actor, now)
        if self.everything:
            return FreezeRecord("all", "*", reason, actor, now)
        return None  # a single request: its credentials go, the agent may go on


def denial_for(target: RevokeTarget, cutoff: int) -> Denial:
    """What the target's revocation denies on a tier role: sessions issued before ``cutoff``,
    of one agent (SourceIdentity), one request (its session tag), or all of them."""
    if target.agent is not None:
        # Sessions issued before SourceIdentity named one agent each carry the old value.
        values = {source_identity(target.agent), legacy_source_identity(target.agent)}
        return Denial(cutoff, AGENT_KEY, frozenset(values))
    if target.request_id is not None:
        return Denial(cutoff, REQUEST_KEY, frozenset({target.request_id}))
    return Denial(cutoff)


@dataclass(frozen=True)
class Unfrozen:
    """What `broker unfreeze` did: how many freezes it lifted, and from when."""

    lifted: int
    effective_at: float


class OpenRequests(Protocol):
    """Cancels the open requests a revocation reaches (the approval service)."""

    def cancel_open(self, reason: str, actor: str, **reach: Unpack[Reach]) -> Sequence[object]: ...


class KillSwitchStore(FreezeStore, IssuedStore, LockStore, Protocol):
    """Freezes to add and lift, issued credentials to find and mark revoked, and a lock per
    role for its revocation policy."""


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class KillSwitch:
    store: KillSwitchStore
    issuers: Mapping[str, Issuer]
    accounts: AwsAccounts | None
    # The scopes whose roles a revocation may have to deny (those in force, in a server).
    scopes: Callable[[], Iterable[Scope]]
    approvals: OpenRequests
    cache: CredentialCache
    guard: Guard
    notifier: Notifier
    audit: AuditRecorder
    metrics: Metrics | None = None
    clock: Callable[[], float] = time.time
    # Upstream revocations in flight at once (limits.revocation_concurrency).
    concurrency: int = DEFAULT_CONCURRENCY
    # How long after a freeze another replica may still mint: its freezes cache, the
    # upstream deadline, a second for the write before the call and for clock skew.
    in_flight_seconds: float = FREEZE_CACHE_SECONDS + 11.0

    @classmethod
    def for_settings(cls, settings: Settings, **parts: Any) -> KillSwitch:
        """With the settings' concurrency, and as in-flight window another replica's
        freezes cache, its upstream deadline and a second (the write-ahead, clock skew)."""
        return cls(
            **parts,
            concurrency=settings.revocation_concurrency,
            in_flight_seconds=FREEZE_CACHE_SECONDS + settings.upstream_deadline_seconds + 1.0,
        )

    def revoke(self, target: RevokeTarget, actor: str, reason: str) -> RevocationReport:
        if len(reason.strip()) < 3:
            raise BadRequest("say why: a reason is required", "reason")
        now = self.clock()
        freeze = target.freeze(reason, actor, now)
        if freeze is not None:
            frozen = self.audit.build(
                "freeze", "frozen", actor, reason=reason, kind=freeze.kind, target=freeze.target
            )
            self.store.add_freeze(freeze, frozen)
            self.guard.forget_freezes()
        records = self._settle_in_flight(
            self.store.active_issued(now, **target.reach()),
            now,
        )
        # AWS's role policies and Vault's tokens and leases are revoked at the same time
        # (in the caller's context: an HTTP request's id reaches the audit records).
        with ThreadPoolExecutor(max_workers=1) as aside:
            aws = aside.submit(
                contextvars.copy_context().run,
                self._revoke_aws,
                target,
                [r for r in records if r.backend == "aws"],
                now,
                actor,
                reason,
            )
            backends = self._revoke_each(
                [r for r in records if r.backend != "aws"], now, actor, reason
            )
            backends["aws"] = aws.result()
        evicted = self._evict(target)
        cancelled = self.approvals.cancel_open(
            f"cancelled by the kill switch: {reason}", actor, **target.reach()
        )
        report = RevocationReport(
            target=target.describe(),
            frozen=freeze.describe() if freeze else None,
            backends=backends,
            cache_evicted=evicted,
            cancelled=len(cancelled),
            alert="",
        )
        report.alert = self._alert(report, actor, reason)
        counts: dict[str, Any] = {f"{name}_revoked": o.revoked for name, o in backends.items()}
        counts.update({f"{name}_failed": o.failed for name, o in backends.items() if o.failed})
        self.audit.record(
            "revoke",
            "complete" if report.ok else "partial",
            actor,
            reason=reason,
            service=target.service,
            environment=target.environment,
            request_id=target.request_id,
            target=report.target,
            roles=backends["aws"].roles,
            unreached=[e for o in backends.values() for e in o.errors] or None,
            cancelled=len(cancelled),
            counts=counts,
        )
        log.warning("kill switch: %s", report.target, extra={"actor": actor, "complete": report.ok})
        return report

    def _credential(
        self,
        record: IssuedRecord,
        revoked: bool,
        actor: str,
        reason: str,
        error: str = "",
        seconds: float | None = None,
    ) -> AuditRecord:
        """One record per credential, with its correlation ids (access key, accessor...)
        and how long its upstream took to confirm; built, for the caller to append."""
        outcome = "revoked" if revoked else "failed"
        if self.metrics is not None:
            self.metrics.revocation(record.backend, outcome)
        took = None if seconds is None else round(seconds * 1000, 1)
        return self.audit.build_credential_event(
            "revoke", outcome, actor, record, reason=error or reason, took_ms=took
        )

    def _settle_in_flight(self, records: list[IssuedRecord], now: float) -> list[IssuedRecord]:
        """Credentials being minted (written ahead, not yet recorded) are marked revoked
        first: their completion sees it, revokes what it minted and hands nothing out. One
        that completed in between is read again and revoked here like any other."""
        minting = [r.id for r in records if r.state == "minting" and r.id is not None]
        if not minting:
            return records
        stopped = set(self.store.stop_in_flight(minting, now))
        completed = [r for r in self.store.issued_by_ids(minting) if r.id not in stopped]
        kept = [r for r in records if r.state != "minting" or r.id in stopped]
        return kept + [r for r in completed if r.revoked_at is None]

    def _revoke_each(
        self, records: list[IssuedRecord], now: float, actor: str, reason: str
    ) -> dict[str, BackendOutcome]:
        """Revoke Vault tokens and database leases one by one, ``concurrency`` at a time."""
        outcomes = {backend: BackendOutcome() for backend in ("vault", "database")}
        for backend in sorted({r.backend for r in records} - set(self.issuers)):
            unconfigured = [r for r in records if r.backend == backend]
            outcomes[backend] = BackendOutcome(
                failed=len(unconfigured), errors=[f"{backend}: no issuer configured"]
            )
            records = [r for r in records if r.backend != backend]

        def revoke_one(record: IssuedRecord) -> None:
            self.issuers[record.backend].revoke(record)

        def audit(attempt: Attempt[IssuedRecord]) -> None:
            error = attempt.error
            self.audit.append_all(
                [
                    self._credential(
                        attempt.item, error is None, actor, reason, error or "", attempt.seconds
                    )
                ]
            )

        done: list[int] = []
        for attempt in attempt_each(records, revoke_one, self.concurrency, then=audit):
            outcome = outcomes.setdefault(attempt.item.backend, BackendOutcome())
            if attempt.error is not None:
                outcome.failed += 1
                if attempt.error not in outcome.errors:
                    outcome.errors.append(attempt.error)
                continue
            outcome.revoked += 1
            if attempt.item.id is not None:
                done.append(attempt.item.id)
        self.store.mark_revoked(done, now)
        return outcomes

    def affected_roles(self, target: RevokeTarget, records: list[IssuedRecord]) -> list[str]:
        """Tier roles whose sessions must die: those in the records and, because another
        replica may be minting one right now, every role of the scopes the target reaches
        (for an agent: every scope it may request)."""
        roles = {r.role_arn for r in records if r.role_arn}
        if target.request_id is not None:
            return sorted(roles)
        for scope in self.scopes():
            if target.service is not None and scope.service != target.service:
                continue
            if target.agent is not None and not may_be_requested_by(scope, target.agent):
                continue
            for env in scope.environments.values():
                if env.aws is None or (target.environment and env.name != target.environment):
                    continue
                roles.update(
                    substitute(arn, env.placeholders(None)) for arn in env.aws.roles.values()
                )
        return sorted(roles)

    def _revoke_aws(
        self,
        target: RevokeTarget,
        records: list[IssuedRecord],
        now: float,
        actor: str,
        reason: str,
    ) -> BackendOutcome:
        outcome = BackendOutcome()
        roles = self.affected_roles(target, records)
        if not roles:
            return outcome
        if self.accounts is None:
            # No AWS issuer either (what mints sessions also reaches IAM): only a record
            # of an earlier configuration could need a deny.
            if any(r.role_arn for r in records):
                outcome.failed = len(records)
                outcome.errors.append("aws: not configured; sessions were not revoked")
            return outcome
        denials = RoleDenials(self.accounts, self.store)
        denial = denial_for(target, cutoff_for(now, self.in_flight_seconds))
        took: dict[str, float] = {}

        def deny(arn: str) -> Compacted | str | None:
            started = time.perf_counter()
            try:
                return _deny(denials, arn, denial, now)
            finally:
                took[arn] = time.perf_counter() - started

        with ThreadPoolExecutor(max_workers=min(8, len(roles))) as pool:
            results = list(pool.map(deny, roles))
        for arn, result in zip(roles, results, strict=True):
            if isinstance(result, str):
                outcome.errors.append(f"aws role {arn}: {result}")
            elif result is not None:
                outcome.roles.append(arn)
                if result.collateral:
                    outcome.collateral.append(f"role {arn}: {result.collateral}")
        reached = set(outcome.roles)
        done = [r for r in records if r.role_arn in reached]
        # A session died when the deny on its role was confirmed: that is its time.
        self.audit.append_all(
            [
                self._credential(
                    record,
                    record.role_arn in reached,
                    actor,
                    reason,
                    "" if record.role_arn in reached else "its role was not reached",
                    took.get(record.role_arn or ""),
                )
                for record in records
            ]
        )
        outcome.revoked = len(done)
        outcome.failed = len(records) - len(done)
        self.store.mark_revoked([r.id for r in done if r.id is not None], now)
        return outcome

    def _evict(self, target: RevokeTarget) -> int:
        if target.agent is not None:
            return self.cache.evict_agent(target.agent)
        if target.service is not None:
            return self.cache.evict(
                lambda key: (
                    key.service == target.service
                    and (target.environment is None or key.environment == target.environment)
                )
            )
        if target.request_id is not None:
            return self.cache.evict_request(target.request_id)
        return self.cache.clear()

    def _alert(self, report: RevocationReport, actor: str, reason: str) -> str:
        try:
            self.notifier.alert(
                f"Kill switch: {report.target} revoked by {actor}: {reason}", report.lines()
            )
        except NotificationFailed as e:
            return f"FAILED ({e}); tell the approvers another way"
        return "sent"

    def unfreeze(self, target: RevokeTarget, actor: str, reason: str) -> Unfrozen:
        """Lift the target's freezes (revoked credentials stay revoked).

        The lift takes effect once the AWS cut-off written when the freeze began has
        passed: an AWS session issued before it would be denied by the revocation policy
        the moment it is used, so until then the agent is told to wait, not handed a dead
        session.
        """
        now = self.clock()
        freeze = target.freeze(reason, actor, now)
        if freeze is None:
            raise BadRequest("a request is not frozen: unfreeze an agent, a service or all")
        began = [
            f.created_at
            for f in self.store.active_freezes(now)
            if f.kind == freeze.kind and f.target == freeze.target
        ]
        effective_at = max([now, *(cutoff_for(b, self.in_flight_seconds) for b in began)])
        lifted = self.store.lift_freezes(
            freeze.kind,
            freeze.target,
            effective_at,
            self.audit.build(
                "unfreeze",
                "lifted" if began else "nothing",
                actor,
                reason=reason,
                kind=freeze.kind,
                target=freeze.target,
                lifted=len(began),
                effective_at=effective_at if effective_at > now else None,
            ),
        )
        if lifted and freeze.kind == "agent":
            self.guard.restart_breaker(freeze.target)
        self.guard.forget_freezes()
        return Unfrozen(lifted, effective_at)


def _deny(denials: RoleDenials, arn: str, denial: Denial, now: float) -> Compacted | str | None:
    """What was written on ``arn``, why it failed, or None: the role does not exist (no
    session of it can either)."""
    try:
        return denials.deny(arn, denial, now)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NoSuchEntity":
            return None
        return failure_reason(e)
    except (BotoCoreError, BrokerError) as e:
        return failure_reason(e)
