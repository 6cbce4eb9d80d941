"""The credentials use case: resolve, decide, then issue at once (read) or escalate.

This is the one place that sequences an agent's request: intake (pure), the guard's
decision (:func:`broker.policy.decision.decide_request`, on inputs the guard gathers),
then the issuance step (:mod:`broker.issuance`) or an escalation opened for approvers.
Views call :meth:`CredentialService.request` and render what it returns; a refusal is
audited, counted, and raised as the error its decision names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

from broker.approvals.pending import Pending
from broker.audit.recorder import AuditRecorder
from broker.errors import BrokerError
from broker.identity.model import AgentIdentity
from broker.intake import ResolvedRequest, parse_request, resolve
from broker.issuance import IssuanceService, Issued
from broker.metrics import Metrics
from broker.policy.decision import Allow, Deny, RequestDecision
from broker.policy.iam_actions import IamDatabase
from broker.scopes.holder import ScopeHolder
from broker.scopes.model import Approval

Outcome = Issued | Pending


class Guard(Protocol):
    """Gathers what decides a request, and counts refusals (the circuit breaker)."""

    def decide(
        self, identity: AgentIdentity, resolved: ResolvedRequest, now: float
    ) -> RequestDecision:
        """Allow, NeedsApproval, or Deny (frozen, change freeze, rate limited...)."""
        ...

    def refused(self, identity: AgentIdentity, error: BrokerError, now: float) -> None:
        """Learn of a refusal (the circuit breaker counts them)."""
        ...


class Escalations(Protocol):
    def open(
        self, identity: AgentIdentity, resolved: ResolvedRequest, rule: Approval, now: float
    ) -> Pending:
        """Create a pending write/delete request and notify its approvers."""
        ...


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class CredentialService:
    scopes: ScopeHolder
    iam: IamDatabase
    guard: Guard
    issuance: IssuanceService
    escalations: Escalations
    audit: AuditRecorder
    metrics: Metrics
    clock: Callable[[], float] = time.time

    def request(self, identity: AgentIdentity, body: object) -> Outcome:
        """Handle POST /v1/credentials for a verified agent."""
        now = self.clock()
        try:
            resolved = resolve(parse_request(body), self.scopes.current, identity, self.iam)
            decision = self.guard.decide(identity, resolved, now)
        except BrokerError as e:
            self._refuse(identity, body, e, now)
        if isinstance(decision, Deny):
            self._refuse(identity, body, decision.error(), now)
        if isinstance(decision, Allow):
            # An intent's credential is minted for that intent only: never from the cache.
            cache = resolved.intent is None
            return self.issuance.issue(identity, resolved, request_id=None, use_cache=cache)
        return self.escalations.open(identity, resolved, decision.rule, now)

    def _refuse(
        self, identity: AgentIdentity, body: object, error: BrokerError, now: float
    ) -> NoReturn:
        """Audit and count a refusal, then raise it to the client."""
        fields = body if isinstance(body, dict) else {}
        self.audit.record(
            "request",
            "denied",
            identity.principal,
            reason=error.message,
            service=_text(fields.get("service")),
            environment=_text(fields.get("environment")),
            tier=_text(fields.get("tier")),
            error=error.code,
        )
        self.guard.refused(identity, error, now)
        self.metrics.denial(error.code)
        raise error


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None
