"""Break-glass: an emergency escalation for an agent, during a change freeze or a Slack outage.

Two configured approvers eligible for the tier, working on the CLI from two different
operating-system accounts, open and approve an escalation for a named agent. It bypasses
the scope's change-freeze windows, the tier's mandatory delay and Slack (nothing waits on a
message); it does not bypass the kill switch, the scope (requesters, resources, the
blast-radius cap) or the approver rules (listed for the tier now, never the requester,
distinct people). Its credentials live at most ``approvals.break_glass_ttl`` (15 minutes by
default) and the tier's TTL, and the agent collects them through the normal
``POST /v1/requests/<id>/credentials``.

Why two OS accounts: the CLI cannot prove who is typing. Anyone who can run it with the
broker's config can name any approver; the only identity it observes is the operating
system's. Two approvals from one OS account are one person and are refused.

Break-glass is loud: an alert through the notifier (its failure is reported, never
blocking: Slack may be the thing that is down), a WARNING log line, and ``break_glass``
audit records with ``review_required: true``, refusals included.
"""

from __future__ import annotations

import getpass
import logging
import os
import pwd
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from broker.approvals.pending import RequestView, pending_record
from broker.approvals.service import ApprovalService
from broker.config import Settings
from broker.errors import BadRequest, BrokerError, Conflict, Forbidden, Frozen
from broker.identity.mint import AGENT_SUBJECT_PREFIX
from broker.identity.model import AgentIdentity
from broker.identity.verifier import LOCAL_ISSUER_NAME
from broker.ids import looks_like_request_id
from broker.intake import MAX_JUSTIFICATION, parse_request, resolve
from broker.notify.base import Notifier, failure_reason
from broker.policy.decision import not_eligible
from broker.store.base import ApprovalStore, AuditStore, CounterStore, RequestStore
from broker.store.records import RequestRecord

if TYPE_CHECKING:
    from broker.services import Services

log = logging.getLogger(__name__)

ACTION = "break_glass"
VIA = "break-glass"
REQUIRED_APPROVERS = 2
MIN_REASON_CHARACTERS = 20
MIN_REASON_WORDS = 4
AGENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
# How long an OS account's claim on a request is remembered: longer than any request lives.
CLAIM_SECONDS = 8 * 24 * 3600


@dataclass(frozen=True)
class Operator:
    """Who runs the CLI, as far as the operating system says: all the CLI can observe.

    ``login`` is :func:`getpass.getuser` (the login name, which honours ``$USER``);
    ``account`` is the account of the process's real user id, which the environment cannot
    change. Both are recorded, and both are compared.
    """

    login: str
    account: str
    host: str

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for n in (self.login, self.account) if n)

    def audit_fields(self) -> dict[str, str]:
        """What the audit trail records of the operator (a later approval is compared to it)."""
        return {"os_user": self.login, "os_account": self.account, "host": self.host}

    def describe(self) -> str:
        who = self.login if self.login == self.account else f"{self.login} (uid {self.account})"
        return f"{who}@{self.host}"


def current_operator() -> Operator:
    """The OS user and host running this process."""
    try:
        account = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        account = f"uid-{os.getuid()}"
    return Operator(login=getpass.getuser(), account=account, host=socket.gethostname())


@dataclass(frozen=True)
class PriorApproval:
    """A break-glass approval already given: by whom, from which OS accounts."""

    approver: str
    os_names: frozenset[str]


@dataclass(frozen=True)
class BreakGlassAsk:
    """What the first approver asks for, on the agent's behalf."""

    agent: str  # agent:NAME
    service: str
    environment: str
    region: str | None
    tier: str
    backend: str
    resources: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class BreakGlassOutcome:
    """The request after this step, and the alert's failure if it could not be sent."""

    view: RequestView
    alert_failure: str | None = None


# -- pure decisions ----------------------------------------------------------------------


def reason_problem(reason: str) -> str | None:
    """Why ``reason`` is not an acceptable justification (None when it is): a sentence."""
    text = reason.strip()
    if any(ord(c) < 32 and c not in "\t\n" for c in text):
        return "the reason must be plain text (no control characters)"
    if len(text) > MAX_JUSTIFICATION:
        return f"the reason must be at most {MAX_JUSTIFICATION} characters"
    if len(text) < MIN_REASON_CHARACTERS or len(text.split()) < MIN_REASON_WORDS:
        return (
            "a reason is mandatory: at least a sentence saying what is broken and why it "
            f"cannot wait ({MIN_REASON_WORDS}+ words, {MIN_REASON_CHARACTERS}+ characters)"
        )
    return None


def approval_problem(
    prior: Sequence[PriorApproval], approver: str, operator: Operator
) -> str | None:
    """Why ``approver`` working as ``operator`` may not add a break-glass approval now."""
    for earlier in prior:
        if earlier.approver == approver:
            return (
                f"{approver} already approved this break-glass request; "
                "a second, distinct approver must approve"
            )
        shared = earlier.os_names & operator.names
        if shared:
            return (
                f"operating-system user {sorted(shared)[0]} already approved this "
                "break-glass request (as "
                f"{earlier.approver}); the CLI proves only the OS account, so a second "
                "person must approve from their own account"
            )
    return None


def agent_identity(agent: str, settings: Settings) -> AgentIdentity:
    """The identity a broker-minted token of ``agent:NAME`` proves (what collection checks)."""
    name = agent.removeprefix(AGENT_SUBJECT_PREFIX)
    if not agent.startswith(AGENT_SUBJECT_PREFIX) or not AGENT_NAME.fullmatch(name):
        raise BadRequest("--agent must be agent:NAME (letters, digits, '-' and '_')", "agent")
    local = settings.identity.local
    if not local.enabled:
        raise BadRequest(
            "break-glass is for broker-minted agent identities (identity.local is disabled)",
            "agent",
        )
    return AgentIdentity(issuer=LOCAL_ISSUER_NAME, subject=agent, claims={"iss": local.issuer})


class BreakGlassStore(RequestStore, ApprovalStore, CounterStore, AuditStore, Protocol):
    """Requests to open and cancel, approvals and OS-account claims, the audit trail."""


# -- the use case ------------------------------------------------------------------------


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class BreakGlass:
    """Open and approve break-glass escalations, enforcing two distinct humans."""

    # Settings, scopes, the audit trail, freezes and the clock are the approval service's.
    approvals: ApprovalService
    store: BreakGlassStore
    notifier: Notifier

    @classmethod
    def from_services(cls, services: Services) -> BreakGlass:
        return cls(services.approvals, services.store, services.notifier)

    # -- opening ----------------------------------------------------------------------

    def request(self, ask: BreakGlassAsk, approver: str, operator: Operator) -> BreakGlassOutcome:
        """Create a break-glass escalation for ``ask.agent`` with ``approver``'s approval."""
        try:
            return self._request(ask, approver, operator)
        except BrokerError as e:
            self._refused(e, approver, operator, None, ask.service, ask.environment, ask.tier)
            raise

    def _request(self, ask: BreakGlassAsk, approver: str, operator: Operator) -> BreakGlassOutcome:
        svc = self.approvals
        now = svc.clock()
        problem = reason_problem(ask.reason)
        if problem:
            raise BadRequest(problem, "reason")
        if ask.tier not in ("write", "delete"):
            raise BadRequest("break-glass is for write or delete (read needs no approval)", "tier")
        identity = agent_identity(ask.agent, svc.settings)
        svc.approver_identity(approver)
        parsed = parse_request(
            {
                "service": ask.service,
                "environment": ask.environment,
                "tier": ask.tier,
                "backend": ask.backend,
                "resources": list(ask.resources),
                "justification": ask.reason.strip(),
                "duration": svc.settings.approvals.break_glass_ttl_seconds,
                **({"region": ask.region} if ask.region is not None else {}),
            }
        )
        # The scope still decides: requesters, environment, resources, the blast-radius cap.
        resolved = resolve(parsed, svc.scopes.current, identity, svc.iam)
        if svc.frozen(identity.principal, ask.service, ask.environment) is not None:
            raise Frozen(
                f"frozen: {identity.principal} or {ask.service}/{ask.environment} is frozen by "
                "the kill switch or the circuit breaker; break-glass does not lift a freeze "
                "(an operator runs `broker unfreeze`)"
            )
        rule = resolved.tier.approval
        assert rule is not None, "escalated tiers always have an approval rule"
        record = pending_record(
            identity,
            resolved,
            now,
            break_glass=True,
            approvals_required=max(REQUIRED_APPROVERS, rule.total_required),
            delay_seconds=0,
        )
        self._check_eligible(record, approver)
        opened = svc.audit.build_request_event(
            "request",
            "pending",
            f"approver:{approver}",
            record,
            break_glass=True,
            approvals_required=record.approvals_required,
        )
        self.store.create_request(record, opened)
        self._claim(record.id, operator, now)
        try:
            view = svc.decide(record.id, approver, "approve", VIA, ask.reason.strip())
        except BrokerError as e:
            why = f"break-glass refused: {e.message}"
            svc.cancel(record, ["pending"], "broker", why, now)
            raise
        return self._recorded(view, approver, operator, ask.reason.strip(), opened=True)

    # -- approving --------------------------------------------------------------------

    def approve(
        self, request_id: str, approver: str, reason: str, operator: Operator
    ) -> BreakGlassOutcome:
        """Add ``approver``'s approval to a break-glass request, as a different OS user."""
        try:
            return self._approve(request_id, approver, reason, operator)
        except BrokerError as e:
            known = request_id if looks_like_request_id(request_id) else None
            self._refused(e, approver, operator, known)
            raise

    def _approve(
        self, request_id: str, approver: str, reason: str, operator: Operator
    ) -> BreakGlassOutcome:
        now = self.approvals.clock()
        problem = reason_problem(reason)
        if problem:
            raise BadRequest(problem, "reason")
        if not looks_like_request_id(request_id):
            raise BadRequest("malformed request id (expected req_ and 26 letters or digits)")
        record = self.approvals.get(request_id)  # expires it first when it is overdue
        if not record.break_glass:
            raise Forbidden(
                f"{request_id} is not a break-glass request; approve it on the approval page"
            )
        if record.status != "pending":
            raise Conflict(f"request {request_id} is already {record.status}")
        self.approvals.approver_identity(approver)
        problem = approval_problem(self.prior_approvals(request_id), approver, operator)
        if problem:
            raise Forbidden(problem)
        self._check_eligible(record, approver)  # before the claim: a typo must not use it up
        self._claim(request_id, operator, now)
        view = self.approvals.decide(request_id, approver, "approve", VIA, reason.strip())
        return self._recorded(view, approver, operator, reason.strip(), opened=False)

    def prior_approvals(self, request_id: str) -> list[PriorApproval]:
        """Break-glass approvals recorded so far, with the OS accounts they came from."""
        os_names: dict[str, frozenset[str]] = {}
        for r in self.store.audit_records(request_id=request_id):
            if r.action == ACTION and r.outcome in ("requested", "issued"):
                names = (r.details.get("os_user"), r.details.get("os_account"))
                os_names[str(r.details.get("approver"))] = frozenset(
                    n for n in names if isinstance(n, str) and n
                )
        return [
            PriorApproval(a.approver, os_names.get(a.approver, frozenset()))
            for a in self.store.approvals_for(request_id)
            if a.decision == "approve"
        ]

    # -- plumbing ---------------------------------------------------------------------

    def _check_eligible(self, record: RequestRecord, approver: str) -> None:
        """The approver is listed for the tier now (decide checks again, with the rest)."""
        _, _, eligible = self.approvals.eligible(record)
        if approver not in eligible:
            raise not_eligible(approver, record).error()

    def _claim(self, request_id: str, operator: Operator, now: float) -> None:
        """Atomically claim each of the operator's OS names for this request, on any replica.

        The check in :func:`approval_problem` gives a clear message; this closes the race
        of two approvals from one OS account at the same instant.
        """
        for name in sorted(operator.names):
            added, _, _ = self.store.count_and_add(
                f"break-glass:{request_id}:os:{name}", CLAIM_SECONDS, 1, now
            )
            if not added:
                raise Forbidden(
                    f"operating-system user {name} already approved this break-glass request; "
                    "a second person must approve from their own account"
                )

    def _recorded(
        self,
        view: RequestView,
        approver: str,
        operator: Operator,
        reason: str,
        opened: bool,
    ) -> BreakGlassOutcome:
        record = view.record
        granted = record.status == "approved"
        outcome = "issued" if granted else "requested"
        self.approvals.audit.request_event(
            ACTION,
            outcome,
            f"approver:{approver}",
            record,
            reason=reason[:500],
            review_required=True,
            agent=record.agent_subject,
            approver=approver,
            **operator.audit_fields(),
            approvals=view.approvals_received,
            required=record.approvals_required,
            approvers=list(view.approvers),
            backend=record.backend,
            region=record.region,
            resources=list(record.resources),
            duration=record.duration_seconds,
            collect_deadline=record.collect_deadline,
        )
        target = (
            f"{record.tier} on {record.service}/{record.environment} for {record.agent_subject}"
        )
        if granted:
            headline = (
                f"BREAK-GLASS approved: {target} is collectable now (request {record.id}, "
                f"approved by {', '.join(view.approvers)}; credentials live "
                f"{record.duration_seconds // 60} min). Review required."
            )
        else:
            verb = "opened" if opened else "approved"
            headline = (
                f"BREAK-GLASS {verb} by {approver} ({operator.describe()}): {target} "
                f"(request {record.id}, {view.approvals_received} of "
                f"{record.approvals_required} approvals). Review required."
            )
        evidence = [
            f"reason: {reason[:300]}",
            f"by {approver} as {operator.describe()}",
            *(f"resource: {r}" for r in record.resources[:10]),
        ]
        log.warning(
            "break-glass %s",
            outcome,
            extra={
                "request_id": record.id,
                "agent": record.agent_subject,
                "service": record.service,
                "tier": record.tier,
                "approver": approver,
                "os_user": operator.login,
                "host": operator.host,
            },
        )
        return BreakGlassOutcome(view, self._alert(headline, evidence, record.id))

    def _alert(self, text: str, evidence: Iterable[str], request_id: str | None) -> str | None:
        """Alert the approvers; report (never raise) a failure: Slack may be what is down."""
        try:
            self.notifier.alert(text, list(evidence))
        except Exception as e:  # noqa: BLE001 - break-glass must work when the notifier fails
            reason = failure_reason(e)
            self.approvals.audit.record(
                "notify", "failed", "broker", reason=reason, request_id=request_id
            )
            log.warning("break-glass alert failed: %s", reason, extra={"request_id": request_id})
            return reason
        return None

    def _refused(
        self,
        error: BrokerError,
        approver: str,
        operator: Operator,
        request_id: str | None,
        service: str | None = None,
        environment: str | None = None,
        tier: str | None = None,
    ) -> None:
        """Audit (and, for a refused rule, alert) a refused break-glass attempt."""
        try:
            self.approvals.audit.record(
                ACTION,
                "refused",
                f"approver:{approver[:64]}",
                reason=error.message,
                service=service,
                environment=environment,
                tier=tier,
                request_id=request_id,
                review_required=True,
                error=error.code,
                approver=approver[:64],
                **operator.audit_fields(),
            )
        except BrokerError:
            return  # the store is down: the caller still reports the original error
        log.warning(
            "break-glass refused: %s",
            error.message,
            extra={"request_id": request_id, "approver": approver[:64], "os_user": operator.login},
        )
        if isinstance(error, Forbidden):
            self._alert(
                f"BREAK-GLASS refused for {approver[:64]} ({operator.describe()}): {error.message}",
                [],
                request_id,
            )
