"""``broker mcp``: the broker as MCP tools for AI coding agents (stdio transport).

Tools: ``request_credentials`` (read, issued at once), ``request_elevation`` (write/delete,
waits for humans), ``request_status`` (poll; collects once approved) and
``list_my_scopes``. Each returns a machine-readable state (``issued``, ``pending`` with the
approvals needed and the approval page link, ``approved``, ``denied`` with the reason,
``expired``, ``frozen``, ``unreachable``, ``error``).

Secrets never enter the model's context: issued credentials are written to an AWS profile
in a shared credentials file, or to an env file of their own (mode 0600), and the result
names the profile or file plus how to use it. Only non-secret ids (the access key id, the
Vault accessor, the database user name) appear in results.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from pydantic import Field

from broker.client import (
    ApprovalPending,
    BrokerClient,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
    Issued,
    PendingRequest,
    RequestState,
)

MANAGED_MARKER = "# managed by agent-credential-broker"
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SECTION = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]\s*$")

INSTRUCTIONS = """\
Short-lived cloud credentials from the agent credential broker.
- Call list_my_scopes to see which services, environments, regions and tiers you may ask for.
- request_credentials gives read access at once. Credentials are written to an AWS profile or
  an env file; the result says which and how to use it. Secrets are never shown to you.
- Writes and deletes need human approval: call request_elevation with a clear justification,
  show the approval_url to the user, then call request_status (wait_seconds up to 30) until
  the status is issued, denied or expired. Never retry a denied request to get around it.
- status "frozen" means an operator stopped all issuing for you: stop and tell the user.
"""


# -- where credentials go ---------------------------------------------------------------


def replace_section(text: str, name: str, body: list[str]) -> str:
    """``text`` (an INI file) with section ``name`` replaced by ``body``, or appended.

    Everything else is kept byte for byte. Refuses (``ValueError``) to replace a section
    the broker did not write, so a model can never overwrite the user's own profiles.
    """
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    found = False
    index = 0
    while index < len(lines):
        match = _SECTION.match(lines[index])
        if match is None or match.group(1) != name:
            out.append(lines[index])
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not _SECTION.match(lines[end]):
            end += 1
        if MANAGED_MARKER + "\n" not in lines[index + 1 : end] and not found:
            raise ValueError(f"profile '{name}' exists and was not written by the broker")
        if not found:
            out.append(f"[{name}]\n")
            out.extend(body)
            if end < len(lines):
                out.append("\n")
        found = True
        index = end
    if not found:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        if out and out[-1].strip():
            out.append("\n")
        out.append(f"[{name}]\n")
        out.extend(body)
    return "".join(out)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path`` (the file itself is replaced, so not on it)."""
    fd = os.open(path.with_name(f".{path.name}.broker-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


class CredentialWriter:
    """Writes issued credentials to an AWS profile or a 0600 env file; says where."""

    def __init__(self, aws_credentials_file: Path, output_dir: Path) -> None:
        self.aws_credentials_file = aws_credentials_file.expanduser()
        self.output_dir = output_dir.expanduser()

    def prepare(self, backend: str, name: str, env_file: bool) -> None:
        """Check that the destination can be written, before anything is collected."""
        if not PROFILE_NAME.fullmatch(name):
            raise ValueError(
                "profile names are 1-64 letters, digits, '.', '_' or '-' (starting with a "
                "letter or digit)"
            )
        if backend == "aws" and not env_file:
            path = self.aws_credentials_file.resolve()
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if path.exists():
                replace_section(path.read_text(encoding="utf-8"), name, [])
        else:
            self.output_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.output_dir, 0o700)

    def write(self, issued: Issued, name: str, env_file: bool) -> dict[str, str]:
        """Write ``issued``; return where it went and how to use it (no secret)."""
        self.prepare(issued.backend, name, env_file)
        if issued.backend == "aws" and not env_file:
            return self._write_profile(issued, name)
        path = self.output_dir / f"{name}.env"
        _write_private(path, issued.export_lines())
        return {
            "kind": "env_file",
            "path": str(path),
            "usage": f"set -a; . {path}; set +a  (or read the variables from the file)",
        }

    def _write_profile(self, issued: Issued, name: str) -> dict[str, str]:
        key, secret = issued.require("access_key_id", "secret_access_key")
        body = [
            f"{MANAGED_MARKER}\n",
            f"# request {issued.request_id}, expires {issued.to_json()['expires_at']}\n",
            f"aws_access_key_id = {key}\n",
            f"aws_secret_access_key = {secret}\n",
        ]
        if issued.credentials.get("session_token"):
            body.append(f"aws_session_token = {issued.credentials['session_token']}\n")
        path = self.aws_credentials_file.resolve()
        with _locked(path):
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            _write_private(path, replace_section(current, name, body))
        region = issued.credentials.get("region")
        usage = f"AWS_SHARED_CREDENTIALS_FILE={path} AWS_PROFILE={name}"
        if region:
            usage += f" AWS_REGION={region}"
        return {
            "kind": "aws_profile",
            "profile": name,
            "credentials_file": str(path),
            "usage": usage + " aws ...",
        }


# -- the tools --------------------------------------------------------------------------

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


def build_server(tools: BrokerTools) -> MCPServer:
    """The MCP server exposing ``tools``' four tools."""
    server: MCPServer = MCPServer(
        "agent-credential-broker", instructions=INSTRUCTIONS, log_level="WARNING"
    )
    for tool in (
        tools.request_credentials,
        tools.request_elevation,
        tools.request_status,
        tools.list_my_scopes,
    ):
        server.add_tool(tool, structured_output=True)
    return server


def default_aws_credentials_file() -> Path:
    return Path(
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials"
    )


def default_output_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path.home() / ".cache"
    return base / "agent-credential-broker" / "credentials"


def run(client: BrokerClient, aws_credentials_file: Path | None, output_dir: Path | None) -> None:
    """Serve the tools over stdio until the client closes the stream."""
    writer = CredentialWriter(
        aws_credentials_file or default_aws_credentials_file(),
        output_dir or default_output_dir(),
    )
    build_server(BrokerTools(client, writer)).run("stdio")
