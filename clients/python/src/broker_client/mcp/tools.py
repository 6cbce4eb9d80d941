"""The tools' behaviour, independent of MCP plumbing: each returns an outcome
(:mod:`broker_client.mcp.outcomes`).

``request_credentials`` (read, issued at once), ``request_elevation`` (write/delete: opens
a request that waits for humans), ``request_status`` (poll; collects once approved) and
``list_my_scopes``. Secrets never enter the model's context: credentials are written by
:class:`~broker_client.mcp.writer.CredentialWriter` and only their public ids are returned.
The approval page is never returned either: the server hands it to the human through
URL-mode elicitation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker_client.client import BrokerClient
from broker_client.errors import BrokerClientError
from broker_client.intents import as_intent, load_intent
from broker_client.mcp.arguments import (
    CredentialsArguments,
    ElevationArguments,
    IntentArguments,
    StatusArguments,
)
from broker_client.mcp.outcomes import Outcome, from_error, refusal
from broker_client.mcp.writer import CredentialWriter
from broker_client.results import Issued, PendingRequest, RequestState, format_seconds, iso


@dataclass(frozen=True)
class Opened:
    """An elevation now waiting for people: what the server needs to reach them."""

    pending: PendingRequest
    outcome: Outcome


class BrokerTools:
    def __init__(self, client: BrokerClient, writer: CredentialWriter) -> None:
        self.client = client
        self.writer = writer
        # request id -> (profile or file name, env_file) chosen when the request was made
        self._destinations: dict[str, tuple[str, bool]] = {}
        self._written: dict[str, dict[str, str]] = {}  # request id -> where it went

    def list_my_scopes(self) -> Outcome:
        """The scopes this agent may request: services, environments (regions,
        backends) and tiers (TTL, approvals needed, mandatory delay)."""
        try:
            listing = self.client.scopes()
        except BrokerClientError as e:
            return from_error(e)
        return {"status": "ok", **listing}

    def request_credentials(self, args: CredentialsArguments) -> Outcome:
        """Read credentials now, written to an AWS profile or an env file."""
        outcome = self._ask(args, "read", args.resources, "")
        if not isinstance(outcome, Opened):
            return outcome
        # An intent that changes something made the broker open a write/delete request,
        # with no justification for the approvers: withdraw it, and say which tool asks.
        self.withdraw(outcome.pending.request_id)
        return refusal(
            "invalid_argument",
            f"this intent needs {outcome.outcome.get('intent', {}).get('tier', 'approval')} "
            "access, which people approve: call request_elevation with a justification",
            "error",
            field="intent",
        )

    def request_elevation(self, args: ElevationArguments) -> Outcome | Opened:
        """Open a write/delete request (or, rarely, be issued at once)."""
        return self._ask(args, args.tier, args.resources, args.justification)

    def request_status(self, args: StatusArguments) -> Outcome:
        """The state of a request; once collectable, collect and write the credentials."""
        request_id = args.request_id
        if request_id in self._written:
            written = self._written[request_id]
            return {"status": "collected", "request_id": request_id, "written_to": written}
        try:
            state = self.client.status(request_id, args.wait_seconds)
            now = self.client.now()
            if not state.collectable(now):
                return describe(state, now)
            name, env_file = self._destinations.get(
                request_id,
                (default_name(state.service, state.environment, state.tier, state.backend), False),
            )
            self.writer.prepare(state.backend, name, env_file)
            issued = self.client.collect(request_id)
        except (BrokerClientError, ValueError, OSError) as e:
            return from_error(e)
        return self._deliver(issued, state.tier, name, env_file)

    def withdraw(self, request_id: str) -> None:
        """Withdraw an open request nobody waits for any more (best effort)."""
        try:
            self.client.withdraw(request_id)
        except BrokerClientError:
            pass

    def _ask(
        self, args: IntentArguments, tier: str, resources: list[str] | None, justification: str
    ) -> Outcome | Opened:
        name = args.profile or default_name(args.service, args.environment, tier, args.backend)
        try:
            intent = _intent(args, resources)
            self.writer.prepare(args.backend, name, args.env_file)
            outcome = self.client.request(
                args.service,
                args.environment,
                tier,  # type: ignore[arg-type]
                args.backend,
                args.region,
                resources or (),
                args.duration_seconds,
                justification,
                intent,
            )
        except (BrokerClientError, ValueError, OSError) as e:
            return from_error(e)
        if isinstance(outcome, Issued):
            return self._deliver(outcome, tier, name, args.env_file)
        self._destinations[outcome.request_id] = (name, args.env_file)
        return Opened(outcome, pending(outcome))

    def _deliver(self, issued: Issued, tier: str, name: str, env_file: bool) -> Outcome:
        try:
            written = self.writer.write(issued, name, env_file)
        except (BrokerClientError, ValueError, OSError) as e:
            return from_error(e)
        self._written[issued.request_id] = written
        return {
            "status": "issued",
            "request_id": issued.request_id,
            "backend": issued.backend,
            "tier": tier,
            "expires_at": iso(issued.expires_at),
            "cached": issued.cached,
            "ids": issued.public(),
            "written_to": written,
        }


def _intent(args: IntentArguments, resources: list[str] | None) -> dict[str, Any] | None:
    """The intent of the arguments (inline or from a file), or None."""
    if args.intent is not None and args.intent_file is not None:
        raise BrokerClientError("give intent or intent_file, not both", "invalid_argument")
    if (args.intent is not None or args.intent_file is not None) and resources:
        raise BrokerClientError(
            "an intent names its resources: give it or resources, not both", "invalid_argument"
        )
    if args.intent_file is not None:
        return load_intent(args.intent_file)
    return as_intent(args.intent) if args.intent is not None else None


def default_name(service: str, environment: str, tier: str, backend: str) -> str:
    suffix = "" if backend == "aws" else f"-{backend}"
    return f"broker-{service}-{environment}-{tier}{suffix}"[:64]


def pending(outcome: PendingRequest) -> Outcome:
    told = {True: "the approvers were notified", False: "no approver was notified"}
    notified = told.get(outcome.notified) if outcome.notified is not None else None
    return refusal(
        "pending",
        f"request {outcome.request_id} waits for {outcome.approvals_required} approval(s)"
        + (f"; {notified}" if notified else ""),
        request_id=outcome.request_id,
        approvals_required=outcome.approvals_required,
        approvals_received=outcome.approvals_received,
        notified=outcome.notified,
        expires_at=iso(outcome.expires_at),
        intent=dict(outcome.intent) if outcome.intent else None,
        next="call request_status with this request_id (wait_seconds up to 30) until it is "
        "issued, denied or expired",
    )


def describe(state: RequestState, now: float) -> Outcome:
    """A request that cannot be collected yet (or never will be), as an outcome."""
    common: dict[str, Any] = {
        "request_id": state.request_id,
        "service": state.service,
        "environment": state.environment,
        "tier": state.tier,
        "approvals_required": state.approvals_required,
        "approvals_received": state.approvals_received,
    }
    if state.status == "pending":
        return refusal(
            "pending",
            f"waiting for approval: {state.approvals_received}/{state.approvals_required}",
            expires_at=iso(state.expires_at),
            next="call request_status again (wait_seconds up to 30)",
            **common,
        )
    if state.status == "approved":
        left = state.delay_left(now)
        return refusal(
            "approved",
            f"approved; the mandatory delay ends in {format_seconds(left)}",
            collectable_in_seconds=int(left) + 1,
            next="call request_status again once the delay has passed",
            **common,
        )
    reason = state.reason or state.status
    code = state.status if state.status in ("denied", "cancelled", "expired") else "collected"
    return refusal(code, reason, reason=reason, **common)
