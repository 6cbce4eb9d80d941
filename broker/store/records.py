"""Plain records the store reads and writes. Never a secret in any of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

RequestStatus = Literal[
    "pending",  # waiting for approvals
    "approved",  # enough approvals; collectable after the delay, within the window
    "collected",  # credentials handed to the requesting agent (once)
    "denied",  # one approver said no
    "expired",  # nobody decided in time, or the collect window passed
    "cancelled",  # revoked by the kill switch
    "issued",  # a read request, served at once
]
PENDING_STATES: tuple[RequestStatus, ...] = ("pending", "approved")
IssuedState = Literal["minting", "active", "orphan"]


class Reach(TypedDict, total=False):
    """Whose requests or issued credentials a revocation reaches: those of one agent, one
    service (optionally one environment) or one request; a key absent or None matches any."""

    agent_subject: str | None
    service: str | None
    environment: str | None
    request_id: str | None


@dataclass(frozen=True)
class RequestRecord:
    id: str
    agent_key: str
    agent_subject: str  # the agent's principal: issuer and subject (broker.identity.model)
    agent_issuer: str
    agent_claims: Mapping[str, str]
    service: str
    environment: str
    region: str | None
    tier: str
    backend: str
    resources: tuple[str, ...]
    duration_seconds: int
    justification: str
    status: RequestStatus
    created_at: float
    expires_at: float
    approvals_required: int = 0
    delay_seconds: int = 0
    reason: str | None = None
    approved_at: float | None = None
    collect_deadline: float | None = None
    collected_at: float | None = None
    decided_at: float | None = None
    break_glass: bool = False
    notification: Mapping[str, Any] = field(default_factory=dict)
    # The intent's canonical JSON and its SHA-256 (docs/intents.md): what approvers approve.
    intent: str | None = None
    intent_sha256: str | None = None
    # What its destruction would affect, measured after opening: {"status", "lines", "at"}.
    impact: Mapping[str, Any] = field(default_factory=dict)
    # The grant approvers approve, fixed when the request opened (broker.policy.grant): its
    # canonical JSON and SHA-256. None only for requests stored before grants were.
    grant: str | None = None
    grant_sha256: str | None = None

    @property
    def collectable_at(self) -> float | None:
        """When the mandatory delay after the last required approval ends."""
        return None if self.approved_at is None else self.approved_at + self.delay_seconds


@dataclass(frozen=True)
class ApprovalRecord:
    request_id: str
    approver: str
    decision: Literal["approve", "deny"]
    via: str
    created_at: float


@dataclass(frozen=True)
class IssuedRecord:
    """Correlation ids of issued credentials, for revocation and the audit trail."""

    request_id: str
    agent_key: str
    agent_subject: str  # the agent's principal: issuer and subject (broker.identity.model)
    service: str
    environment: str
    region: str | None
    tier: str
    backend: str
    issued_at: float
    expires_at: float
    access_key_id: str | None = None
    source_identity: str | None = None
    role_arn: str | None = None
    vault_accessor: str | None = None
    lease_id: str | None = None
    username: str | None = None
    grant_sha256: str | None = None  # of the grant issued (None: recorded before hashes)
    id: int | None = None
    revoked_at: float | None = None
    # "minting": written before the upstream call (its expiry the longest the credential
    # could live), "active" once recorded, "orphan" when the reconciler revoked a mint that
    # was never recorded.
    state: IssuedState = "active"
    # The Vault policy a token carries: its tier's shared one, or the one made for its
    # request (deleted with the token). None on records from before it was recorded.
    vault_policy: str | None = None


@dataclass(frozen=True)
class FreezeRecord:
    """A kill-switch or circuit-breaker freeze: nothing new is issued to its target."""

    kind: Literal["agent", "scope", "all"]
    target: str  # agent principal, "service" or "service/environment", or "*"
    reason: str
    created_by: str
    created_at: float
    id: int | None = None
    lifted_at: float | None = None

    def describe(self) -> str:
        return "everything" if self.kind == "all" else f"{self.kind} {self.target}"


@dataclass(frozen=True)
class AuditRecord:
    """One decision of the broker, chained to the previous record by its hash."""

    at: float
    actor: str
    action: str
    outcome: str
    reason: str = ""
    service: str | None = None
    environment: str | None = None
    tier: str | None = None
    request_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    seq: int | None = None
    prev_hash: str | None = None
    hash: str | None = None


@dataclass(frozen=True)
class DecisionResult:
    """What recording one approval or denial did to a request."""

    request: RequestRecord
    counted: bool  # False when this approver had already decided (double click)
    approvals: int


@dataclass(frozen=True)
class Completion:
    """A completed issuance as stored (``revoked_at`` set if the kill switch reached its
    write-ahead first), and the freezes in force when it was recorded."""

    record: IssuedRecord
    freezes: tuple[FreezeRecord, ...]
