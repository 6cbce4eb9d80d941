"""The credentials use case: validate, guard, then issue at once (read) or escalate.

This is the one place that sequences a request: intake (pure), guardrails, the cache, the
issuer, the store's record and the audit trail. Views call :meth:`CredentialService.request`
and render what it returns; every refusal is an exception from :mod:`broker.errors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from broker.audit.recorder import AuditRecorder
from broker.cache import CacheKey, CredentialCache
from broker.errors import BrokerError, UpstreamUnavailable
from broker.identity.model import AgentIdentity
from broker.ids import new_request_id
from broker.intake import ResolvedRequest, parse_request, resolve
from broker.issuers.base import IssuedCredential, Issuer, IssueRequest, issued_record
from broker.metrics import Metrics
from broker.policy.iam_actions import IamDatabase
from broker.scopes.holder import ScopeHolder
from broker.store.base import IssuedStore
from broker.store.records import RequestRecord


@dataclass(frozen=True)
class Issued:
    request_id: str
    credential: IssuedCredential
    cached: bool = False


@dataclass(frozen=True)
class Pending:
    request: RequestRecord


Outcome = Issued | Pending


class Guard(Protocol):
    """Guardrails consulted before anything is issued or escalated."""

    def check(self, identity: AgentIdentity, resolved: ResolvedRequest, now: float) -> None:
        """Raise (Frozen, ChangeFreeze, RateLimited...) when the request must not proceed."""
        ...

    def refused(self, identity: AgentIdentity, error: BrokerError, now: float) -> None:
        """Learn of a refusal (the circuit breaker counts them)."""
        ...

    def revoked_requests(self) -> frozenset[str]:
        """Requests whose credentials were revoked (on any replica)."""
        ...


class Escalations(Protocol):
    def open(self, identity: AgentIdentity, resolved: ResolvedRequest, now: float) -> Pending:
        """Create a pending write/delete request and notify its approvers."""
        ...


def correlation_ids(credential: IssuedCredential) -> dict[str, str]:
    """The public ids of a credential worth putting in the audit trail."""
    keys = ("access_key_id", "source_identity", "role_arn", "accessor", "lease_id", "username")
    return {k: credential.public[k] for k in keys if credential.public.get(k)}


class CredentialService:
    def __init__(
        self,
        scopes: ScopeHolder,
        iam: IamDatabase,
        store: IssuedStore,
        cache: CredentialCache,
        issuers: Mapping[str, Issuer],
        audit: AuditRecorder,
        guard: Guard,
        escalations: Escalations,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scopes = scopes
        self.iam = iam
        self.store = store
        self.cache = cache
        self.issuers = issuers
        self.audit = audit
        self.guard = guard
        self.escalations = escalations
        self.metrics = metrics
        self.clock = clock

    def request(self, identity: AgentIdentity, body: object) -> Outcome:
        """Handle POST /v1/credentials for a verified agent."""
        now = self.clock()
        try:
            resolved = resolve(parse_request(body), self.scopes.current, identity, self.iam)
            self.guard.check(identity, resolved, now)
        except BrokerError as e:
            self._refused(identity, body, e, now)
            self.metrics.denial(e.code)
            raise
        if resolved.escalated:
            return self.escalations.open(identity, resolved, now)
        return self.issue(identity, resolved, request_id=None, use_cache=True)

    def _refused(
        self, identity: AgentIdentity, body: object, error: BrokerError, now: float
    ) -> None:
        fields = body if isinstance(body, dict) else {}
        self.audit.record(
            "request",
            "denied",
            identity.subject,
            reason=error.message,
            service=_text(fields.get("service")),
            environment=_text(fields.get("environment")),
            tier=_text(fields.get("tier")),
            error=error.code,
        )
        self.guard.refused(identity, error, now)

    def issue(
        self,
        identity: AgentIdentity,
        resolved: ResolvedRequest,
        request_id: str | None,
        use_cache: bool,
    ) -> Issued:
        """Issue through the backend's issuer (or the cache), record and audit it."""
        request = resolved.request
        key = CacheKey(
            agent_key=identity.key,
            agent_subject=identity.subject,
            service=request.service,
            environment=request.environment,
            region=request.region,
            tier=request.tier,
            backend=request.backend,
            resources=request.resources,
            duration=resolved.duration_seconds,
        )
        if use_cache:
            entry = self.cache.get(key)
            if entry is not None and entry.request_id in self.guard.revoked_requests():
                # Revoked by the kill switch, perhaps on another replica: never hand it out.
                self.cache.evict_request(entry.request_id)
                entry = None
            self.metrics.cache_lookup(entry is not None)
            if entry is not None:
                self.audit.record(
                    "issue",
                    "cached",
                    identity.subject,
                    request_id=entry.request_id,
                    **request.audit_fields(),
                    expires_at=entry.credential.expires_at,
                    **correlation_ids(entry.credential),
                )
                self.metrics.issued.labels(
                    backend=request.backend, tier=request.tier, source="cache"
                ).inc()
                return Issued(entry.request_id, entry.credential, cached=True)
        request_id = request_id or new_request_id(self.clock())
        issue_request = IssueRequest(
            request_id=request_id,
            identity=identity,
            scope=resolved.scope,
            environment=resolved.environment,
            region=request.region,
            tier=request.tier,
            backend=request.backend,
            resources=request.resources,
            duration_seconds=resolved.duration_seconds,
            session_policy=resolved.session_policy,
        )
        issuer = self.issuers.get(request.backend)
        if issuer is None:
            raise UpstreamUnavailable(
                f"no {request.backend} backend is configured", request.backend
            )
        issued_at = self.clock()
        try:
            with self.metrics.upstream(request.backend):
                credential = issuer.issue(issue_request)
        except UpstreamUnavailable as e:
            self.audit.record(
                "issue",
                "failed",
                identity.subject,
                reason=e.message,
                service=request.service,
                environment=request.environment,
                tier=request.tier,
                request_id=request_id,
                backend=request.backend,
            )
            raise
        audit = self.audit.build(
            "issue",
            "issued",
            identity.subject,
            request_id=request_id,
            **request.audit_fields(),
            resources=list(request.resources),
            duration=resolved.duration_seconds,
            expires_at=credential.expires_at,
            **correlation_ids(credential),
        )
        # One transaction: the record revocation needs and its audit record, together.
        self.store.record_issued(issued_record(issue_request, credential, issued_at), audit)
        self.metrics.issued.labels(
            backend=request.backend, tier=request.tier, source="upstream"
        ).inc()
        if use_cache:
            self.cache.put(key, request_id, credential, issued_at)
        return Issued(request_id, credential)


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None
