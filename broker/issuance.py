"""The one step that mints a credential: cache, issuer, store and audit, in that order.

Every credential the broker hands out passes through :meth:`IssuanceService.mint`: a read
request served at once (:mod:`broker.credentials`) and an approved escalation collected by
its agent (:mod:`broker.approvals.service`). What is minted is an :class:`IssueRequest`,
fully decided (scope resolved, duration clamped, session policy compiled); this module
decides nothing about whether it may be, it only makes it so and leaves a trace:

1. the per-replica cache, for read requests (never for a request the kill switch revoked);
2. the write-ahead: the issuance record in state ``minting``, committed before the upstream
   call (for a collection, in the transaction that claims the request), so that nothing the
   broker mints goes unrecorded, whatever happens next (the reconciler,
   :mod:`broker.reconciler`, revokes what was minted under a record never completed);
3. the issuer of the backend: the upstream call, its failure audited;
4. the record completed with the credential's ids, and its audit record, in one
   transaction that also reads whether the kill switch reached the record meanwhile and the
   freezes in force now (not a replica's cached view): a credential minted for a target
   frozen or revoked while it was in flight is revoked at once and never handed out;
5. the cache again, with what was minted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from broker.audit.recorder import AuditRecorder
from broker.cache import CacheKey, CredentialCache
from broker.errors import BrokerError, Frozen, UpstreamUnavailable
from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import ResolvedRequest
from broker.issuers.base import IssuedCredential, Issuer, IssueRequest
from broker.metrics import Metrics
from broker.policy.decision import matching_freeze
from broker.store.base import IssuedStore
from broker.store.records import Completion, IssuedRecord

log = logging.getLogger(__name__)

Begin = Callable[[IssuedRecord], IssuedRecord]


@dataclass(frozen=True)
class Issued:
    request_id: str
    credential: IssuedCredential
    cached: bool = False
    intent: Mapping[str, object] | None = None  # the intent's summary, for the answer


class Revocations(Protocol):
    def revoked_requests(self) -> frozenset[str]:
        """Requests whose credentials were revoked (on any replica)."""
        ...


def correlation_ids(credential: IssuedCredential) -> dict[str, str]:
    """The public ids of a credential worth putting in the audit trail."""
    keys = ("access_key_id", "source_identity", "role_arn", "accessor", "lease_id", "username")
    return {k: credential.public[k] for k in keys if credential.public.get(k)}


def issue_request(
    identity: AgentIdentity, resolved: ResolvedRequest, request_id: str
) -> IssueRequest:
    """Exactly what ``resolved`` grants ``identity``, named ``request_id``."""
    request = resolved.request
    return IssueRequest(
        request_id=request_id,
        identity=identity,
        scope=resolved.scope,
        environment=resolved.environment,
        region=request.region,
        tier=request.tier,
        backend=request.backend,
        resources=request.resources,
        grant=resolved.grant,
    )


def issued_by(request: IssueRequest) -> dict[str, Any]:
    """Who was issued what: the names the issuance record and the cache key share."""
    return {
        "agent_key": request.identity.key,
        "agent_subject": request.identity.principal,
        "service": request.scope.service,
        "environment": request.environment.name,
        "region": request.region,
        "tier": request.tier,
        "backend": request.backend,
    }


def write_ahead(request: IssueRequest, at: float, longest_call: float) -> IssuedRecord:
    """The record written before the upstream call: who, what, under which request, and the
    longest the credential could live (the call may end ``longest_call`` seconds later)."""
    return IssuedRecord(
        request_id=request.request_id,
        **issued_by(request),
        issued_at=at,
        expires_at=at + longest_call + request.duration_seconds,
        role_arn=request.grant.role_arn,
        grant_sha256=request.grant.sha256,
        state="minting",
    )


def issued_record(
    request: IssueRequest, credential: IssuedCredential, issued_at: float
) -> IssuedRecord:
    """The store's record of an issuance: correlation ids only, never the secret parts."""
    public = credential.public
    return IssuedRecord(
        request_id=request.request_id,
        **issued_by(request),
        issued_at=issued_at,
        expires_at=credential.expires_at,
        access_key_id=public.get("access_key_id"),
        source_identity=public.get("source_identity"),
        role_arn=public.get("role_arn"),
        vault_accessor=public.get("accessor"),
        lease_id=public.get("lease_id"),
        username=public.get("username"),
        grant_sha256=request.grant.sha256,
        vault_policy=public.get("policies"),
    )


def cache_key(request: IssueRequest) -> CacheKey:
    """Same agent, same grant, same lifetime: the same credentials may be handed out again."""
    return CacheKey(
        **issued_by(request), resources=request.resources, duration=request.duration_seconds
    )


def named(request: IssueRequest, request_id: str) -> dict[str, Any]:
    """What every audit record about an issuance names (``request_id``: the one it is
    known by, the cached credential's on a cache hit)."""
    return {
        "request_id": request_id,
        "service": request.scope.service,
        "environment": request.environment.name,
        "tier": request.tier,
        "backend": request.backend,
    }


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class IssuanceService:
    store: IssuedStore
    cache: CredentialCache
    issuers: Mapping[str, Issuer]
    audit: AuditRecorder
    revocations: Revocations
    metrics: Metrics
    clock: Callable[[], float] = time.time
    # How long an upstream call may take: a credential written ahead may live this much
    # longer than its duration from the write (limits.upstream_deadline).
    longest_call_seconds: float = 10.0

    def issue(
        self,
        identity: AgentIdentity,
        resolved: ResolvedRequest,
        request_id: str | None,
        use_cache: bool,
        begin: Begin | None = None,
    ) -> Issued:
        """Mint what ``resolved`` grants (or hand out the cached copy when ``use_cache``);
        ``begin`` writes the write-ahead (a collection claims its request with it)."""
        # The id is drawn only on a miss: a cache hit keeps the id it was first issued under.
        probe = issue_request(identity, resolved, request_id or "")
        if use_cache:
            cached = self._cached(probe)
            if cached is not None:
                return cached
        request = issue_request(identity, resolved, request_id or new_request_id(self.clock()))
        issued = self.mint(request, cache=use_cache, begin=begin)
        return replace(issued, intent=resolved.intent.answer()) if resolved.intent else issued

    def mint(
        self, request: IssueRequest, cache: bool = False, begin: Begin | None = None
    ) -> Issued:
        """Write ahead, call the backend's issuer, record and audit the credential (or
        revoke it when the kill switch got there first); cache it if asked."""
        issuer = self.issuers.get(request.backend)
        if issuer is None:
            raise UpstreamUnavailable(
                f"no {request.backend} backend is configured", request.backend
            )
        issued_at = self.clock()
        intent = (begin or self.store.begin_issue)(
            write_ahead(request, issued_at, self.longest_call_seconds)
        )
        credential = self._call_upstream(issuer, request)
        record = replace(issued_record(request, credential, issued_at), id=intent.id)
        try:
            done = self._record(request, credential, record)
        except BrokerError:
            # Not recorded: nothing is handed out. Revoke it now if this replica still can;
            # the reconciler does it otherwise (the write-ahead stays).
            self._withdraw(issuer, record, "its record could not be written")
            raise
        stopped = self._stopped(request, done)
        if stopped is not None:
            if self._withdraw(issuer, done.record, stopped) and done.record.id is not None:
                self.store.mark_revoked([done.record.id], self.clock())
            raise Frozen(f"{stopped}; nothing was handed out")
        if cache:
            self.cache.put(cache_key(request), request.request_id, credential, issued_at)
        return Issued(request.request_id, credential)

    def _stopped(self, request: IssueRequest, done: Completion) -> str | None:
        """Why what was just minted must not be handed out: the kill switch revoked its
        record, or froze its agent or scope, while it was in flight."""
        if done.record.revoked_at is not None:
            return "revoked by the kill switch while it was being issued"
        freeze = matching_freeze(
            done.freezes,
            request.identity.principal,
            request.scope.service,
            request.environment.name,
        )
        if freeze is not None:
            return f"frozen while it was being issued: {freeze.describe()} ({freeze.reason})"
        return None

    def _withdraw(self, issuer: Issuer, record: IssuedRecord, why: str) -> bool:
        """Revoke a credential that is not handed out (AWS: the kill switch's cut-off covers
        sessions in flight; a record never completed is the reconciler's); True when it was
        revoked upstream."""
        outcome, reason = "withdrawn", why
        if record.backend != "aws":
            try:
                issuer.revoke(record)
            except BrokerError as e:
                outcome, reason = "failed", f"{why}; revoking it failed: {e.message}"
                log.warning(
                    "could not withdraw a credential", extra={"request_id": record.request_id}
                )
        try:
            self.audit.credential_event("issue", outcome, "broker", record, reason=reason)
        except BrokerError:
            pass  # the store is what failed: the reconciler will find the write-ahead
        return outcome == "withdrawn" and record.backend != "aws"

    def _cached(self, request: IssueRequest) -> Issued | None:
        entry = self.cache.get(cache_key(request))
        if entry is not None and entry.request_id in self.revocations.revoked_requests():
            # Revoked by the kill switch, perhaps on another replica: never hand it out.
            self.cache.evict_request(entry.request_id)
            entry = None
        self.metrics.cache_lookup(entry is not None)
        if entry is None:
            return None
        self.audit.record(
            "issue",
            "cached",
            request.identity.principal,
            **named(request, entry.request_id),
            region=request.region,
            expires_at=entry.credential.expires_at,
            **correlation_ids(entry.credential),
        )
        self.metrics.labelled(self.metrics.issued, request.backend, request.tier, "cache").inc()
        return Issued(entry.request_id, entry.credential, cached=True)

    def _call_upstream(self, issuer: Issuer, request: IssueRequest) -> IssuedCredential:
        try:
            with self.metrics.upstream(request.backend):
                return issuer.issue(request)
        except UpstreamUnavailable as e:
            failed = named(request, request.request_id)
            self.audit.record(
                "issue", "failed", request.identity.principal, reason=e.message, **failed
            )
            raise

    def _record(
        self, request: IssueRequest, credential: IssuedCredential, record: IssuedRecord
    ) -> Completion:
        """The record revocation needs and its audit record, in one transaction."""
        audit = self.audit.build(
            "issue",
            "issued",
            request.identity.principal,
            **named(request, request.request_id),
            region=request.region,
            resources=list(request.resources),
            duration=request.duration_seconds,
            expires_at=credential.expires_at,
            grant_sha256=request.grant.sha256,
            **correlation_ids(credential),
        )
        done = self.store.complete_issue(record, audit)
        self.metrics.labelled(self.metrics.issued, request.backend, request.tier, "upstream").inc()
        return done
