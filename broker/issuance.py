"""The one step that mints a credential: cache, issuer, store and audit, in that order.

Every credential the broker hands out passes through :meth:`IssuanceService.mint`: a read
request served at once (:mod:`broker.credentials`) and an approved escalation collected by
its agent (:mod:`broker.approvals.service`). What is minted is an :class:`IssueRequest`,
fully decided (scope resolved, duration clamped, session policy compiled); this module
decides nothing about whether it may be, it only makes it so and leaves a trace:

1. the per-replica cache, for read requests (never for a request the kill switch revoked);
2. the issuer of the backend: the upstream call, its failure audited;
3. the store's issuance record (what revocation needs) and its audit record, together;
4. the cache again, with what was minted.

Steps that must surround every upstream call (a record written before it, a check of the
freezes after it) belong in :meth:`IssuanceService.mint`, between these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from broker.audit.recorder import AuditRecorder
from broker.cache import CacheKey, CredentialCache
from broker.errors import UpstreamUnavailable
from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import ResolvedRequest
from broker.issuers.base import IssuedCredential, Issuer, IssueRequest, issued_record
from broker.metrics import Metrics
from broker.store.base import IssuedStore


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


def cache_key(request: IssueRequest) -> CacheKey:
    """Same agent, same grant, same lifetime: the same credentials may be handed out again."""
    return CacheKey(
        agent_key=request.identity.key,
        agent_subject=request.identity.principal,
        service=request.scope.service,
        environment=request.environment.name,
        region=request.region,
        tier=request.tier,
        backend=request.backend,
        resources=request.resources,
        duration=request.duration_seconds,
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

    def issue(
        self,
        identity: AgentIdentity,
        resolved: ResolvedRequest,
        request_id: str | None,
        use_cache: bool,
    ) -> Issued:
        """Mint what ``resolved`` grants (or hand out the cached copy when ``use_cache``)."""
        # The id is drawn only on a miss: a cache hit keeps the id it was first issued under.
        probe = issue_request(identity, resolved, request_id or "")
        if use_cache:
            cached = self._cached(probe)
            if cached is not None:
                return cached
        request = issue_request(identity, resolved, request_id or new_request_id(self.clock()))
        issued = self.mint(request, cache=use_cache)
        return replace(issued, intent=resolved.intent.answer()) if resolved.intent else issued

    def mint(self, request: IssueRequest, cache: bool = False) -> Issued:
        """Call the backend's issuer, record and audit the credential; cache it if asked."""
        issuer = self.issuers.get(request.backend)
        if issuer is None:
            raise UpstreamUnavailable(
                f"no {request.backend} backend is configured", request.backend
            )
        issued_at = self.clock()
        credential = self._call_upstream(issuer, request)
        self._record(request, credential, issued_at)
        if cache:
            self.cache.put(cache_key(request), request.request_id, credential, issued_at)
        return Issued(request.request_id, credential)

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
        self.metrics.issued.labels(backend=request.backend, tier=request.tier, source="cache").inc()
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

    def _record(self, request: IssueRequest, credential: IssuedCredential, at: float) -> None:
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
        self.store.record_issued(issued_record(request, credential, at), audit)
        self.metrics.issued.labels(
            backend=request.backend, tier=request.tier, source="upstream"
        ).inc()
