"""The MCP tools' behaviour, independent of MCP plumbing: each returns a JSON-able state.

Tools: ``request_credentials`` (read, issued at once), ``request_elevation`` (write/delete,
waits for humans), ``request_status`` (poll; collects once approved) and
``list_my_scopes``. Each returns a machine-readable state (``issued``, ``pending`` with the
approvals needed, ``approved``, ``denied`` with the reason, ``expired``, ``frozen``,
``unreachable``, ``error``). Secrets never enter the model's context: credentials are
written by :class:`~broker_client.mcp.writer.CredentialWriter` and only their public ids
are returned.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from broker_client.client import BrokerClient
from broker_client.errors import (
    ApprovalPending,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
)
from broker_client.mcp.writer import CredentialWriter
from broker_client.results import Issued, PendingRequest, RequestState

BackendName = Literal["aws", "vault", "database"]
# Parameters the request tools share, described once for the model.
ServiceParam = Annotated[str, Field(description="The scope's service, e.g. payments")]
EnvironmentParam = Annotated[str, Field(description="The environment, e.g. prod")]
BackendParam = Annotated[BackendName, Field(description="aws, vault or database")]
RegionParam = Annotated[str | None, Field(description="AWS region (aws only)")]
DurationParam = Annotated[
    int | None, Field(description="Lifetime wanted; clamped to the tier's", gt=0)
]
ProfileParam = Annotated[
    str | None,
    Field(description="AWS profile (or env file) name; default broker-<service>-..."),
]
EnvFileParam = Annotated[
    bool, Field(description="Write AWS credentials to an env file, not a profile")
]


class BrokerTools:
    """The tools' behaviour, independent of MCP plumbing: each returns a JSON-able state."""

    def __init__(self, client: BrokerClient, writer: CredentialWriter) -> None:
        self.client = client
        self.writer = writer
        # request id -> (profile or file name, env_file) chosen at request_elevation
        self._destinations: dict[str, tuple[str, bool]] = {}
        self._written: dict[str, dict[str, str]] = {}  # request id -> where it went

    def list_my_scopes(self) -> dict[str, Any]:
        """List the scopes this agent may request: services, environments (regions,
        backends) and tiers (TTL, approvals needed, mandatory delay)."""
        try:
            listing = self.client.scopes()
        except BrokerClientError as e:
            return _failure(e)
        return {"status": "ok", **listing}

    def request_credentials(
        self,
        service: ServiceParam,
        environment: EnvironmentParam,
        backend: BackendParam = "aws",
        region: RegionParam = None,
        resources: Annotated[
            list[str] | None,
            Field(description="Narrow to these ARNs, KV paths or schema.table names"),
        ] = None,
        duration_seconds: DurationParam = None,
        profile: ProfileParam = None,
        env_file: EnvFileParam = False,
    ) -> dict[str, Any]:
        """Get read-only credentials now. They are written to an AWS profile (aws) or an
        env file (vault, database); the result names it. Secrets are never returned."""
        name = profile or _default_name(service, environment, "read", backend)
        try:
            self.writer.prepare(backend, name, env_file)
            outcome = self.client.request(
                service, environment, "read", backend, region, resources or (), duration_seconds
            )
        except (BrokerClientError, ValueError, OSError) as e:
            return _failure(e)
        if isinstance(outcome, PendingRequest):  # a scope whose read tier needs approval
            self._destinations[outcome.request_id] = (name, env_file)
            return _pending(outcome)
        return self._deliver(outcome, "read", name, env_file)

    def request_elevation(
        self,
        service: ServiceParam,
        environment: EnvironmentParam,
        tier: Annotated[Literal["write", "delete"], Field(description="write or delete")],
        justification: Annotated[
            str,
            Field(
                description="Why, in one or two sentences: shown to the human approvers",
                min_length=10,
                max_length=2000,
            ),
        ],
        backend: BackendParam = "aws",
        region: RegionParam = None,
        resources: Annotated[
            list[str] | None,
            Field(description="The exact ARNs, KV paths or tables to change (fewer is faster)"),
        ] = None,
        duration_seconds: DurationParam = None,
        profile: ProfileParam = None,
        env_file: EnvFileParam = False,
    ) -> dict[str, Any]:
        """Ask humans for write or delete credentials. Returns status pending with the
        approval_url to show the user; then poll request_status with the request_id."""
        name = profile or _default_name(service, environment, tier, backend)
        try:
            self.writer.prepare(backend, name, env_file)
            outcome = self.client.request(
                service,
                environment,
                tier,
                backend,
                region,
                resources or (),
                duration_seconds,
                justification,
            )
        except (BrokerClientError, ValueError, OSError) as e:
            return _failure(e)
        if isinstance(outcome, Issued):
            return self._deliver(outcome, tier, name, env_file)
        self._destinations[outcome.request_id] = (name, env_file)
        return _pending(outcome)

    def request_status(
        self,
        request_id: Annotated[str, Field(description="The request_id from request_elevation")],
        wait_seconds: Annotated[
            int, Field(description="Wait up to this long for a change (0-30)", ge=0, le=30)
        ] = 0,
    ) -> dict[str, Any]:
        """The state of an elevation request. Once approved (and any mandatory delay has
        passed) the credentials are collected and written; the result says where."""
        if request_id in self._written:
            written = self._written[request_id]
            return {"status": "collected", "request_id": request_id, "written_to": written}
        try:
            state = self.client.status(request_id, wait_seconds)
            if not state.collectable(self.client.now()):
                return _state(state, self.client.now())
            name, env_file = self._destinations.get(
                request_id,
                (_default_name(state.service, state.environment, state.tier, state.backend), False),
            )
            self.writer.prepare(state.backend, name, env_file)
            issued = self.client.collect(request_id)
        except (BrokerClientError, ValueError, OSError) as e:
            return _failure(e)
        return self._deliver(issued, state.tier, name, env_file)

    def _deliver(self, issued: Issued, tier: str, name: str, env_file: bool) -> dict[str, Any]:
        try:
            written = self.writer.write(issued, name, env_file)
        except (BrokerClientError, ValueError, OSError) as e:
            return _failure(e)
        self._written[issued.request_id] = written
        return {
            "status": "issued",
            "request_id": issued.request_id,
            "backend": issued.backend,
            "tier": tier,
            "expires_at": issued.to_json()["expires_at"],
            "cached": issued.cached,
            "ids": issued.public(),
            "written_to": written,
        }


def _default_name(service: str, environment: str, tier: str, backend: str) -> str:
    suffix = "" if backend == "aws" else f"-{backend}"
    return f"broker-{service}-{environment}-{tier}{suffix}"[:64]


def _pending(outcome: PendingRequest) -> dict[str, Any]:
    return {
        "status": "pending",
        "request_id": outcome.request_id,
        "approvals_required": outcome.approvals_required,
        "approvals_received": outcome.approvals_received,
        "approval_url": outcome.approval_url,
        "expires_at": outcome.expires_at.isoformat(),
        "next": "show approval_url to the user, then call request_status with this request_id",
    }


def _state(state: RequestState, now: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": state.status,
        "request_id": state.request_id,
        "service": state.service,
        "environment": state.environment,
        "tier": state.tier,
        "approvals_required": state.approvals_required,
        "approvals_received": state.approvals_received,
        "approval_url": state.approval_url,
    }
    if state.status == "pending":
        result["expires_at"] = state.expires_at.isoformat()
        result["next"] = "call request_status again (wait_seconds up to 30)"
    elif state.status == "approved":
        result["collectable_in_seconds"] = int(state.delay_left(now)) + 1
        result["next"] = "a mandatory delay is running; call request_status again after it"
    if state.reason:
        result["reason"] = state.reason
    return result


def _failure(error: Exception) -> dict[str, Any]:
    """A machine-readable failure; the text is the broker's or ours, never a secret."""
    if isinstance(error, BrokerClientError):
        status = "error"
        if isinstance(error, Frozen):
            status = "frozen"
        elif isinstance(error, Denied):
            status = "denied"
        elif isinstance(error, Expired):
            status = "expired"
        elif isinstance(error, BrokerUnreachable):
            status = "unreachable"
        elif isinstance(error, ApprovalPending):
            status = "pending"
        result: dict[str, Any] = {"status": status, "error": error.code, "reason": error.message}
        if error.field:
            result["field"] = error.field
        if error.retry_after:
            result["retry_after"] = error.retry_after
        return result
    if isinstance(error, OSError):
        return {
            "status": "error",
            "error": "write_failed",
            "reason": f"cannot write the credentials: {error.strerror or type(error).__name__}",
        }
    return {"status": "error", "error": "invalid_argument", "reason": str(error)}
