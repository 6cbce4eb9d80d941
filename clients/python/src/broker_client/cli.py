"""``broker creds``: credentials for agents and their tools, in the shape each tool reads.

``--format credential-process`` prints the AWS CLI/SDK ``credential_process`` document, so
``aws`` and boto3 fetch and refresh credentials by themselves; ``env`` prints ``export``
lines, ``vault`` the ``VAULT_ADDR``/``VAULT_TOKEN`` exports, ``json`` the broker's body.

A write/delete request waits for its approvers with a live status line on stderr (the
request id, ``pending 1/2 approvals``, ``delay ends in 7:12``), then collects. A local
cache (mode 0600, keyed by the request and the agent token's subject) answers repeated
calls while the credentials are still well within their lifetime, and remembers an open
request so that running the same command again resumes waiting instead of asking twice.

Exit codes (also in docs/agents.md): 0 printed; 1 other error from the broker or here;
2 usage; 3 denied (by policy, an approver or an operator); 4 expired (or already
collected); 5 frozen (kill switch); 6 broker unreachable; 7 still pending (``--no-wait``
or ``--wait-timeout``); 130 interrupted.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from broker.client import BrokerClient, BrokerClientError, Issued, RequestState

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_EXPIRED = 4
EXIT_FROZEN = 5
EXIT_UNREACHABLE = 6
EXIT_PENDING = 7
EXIT_INTERRUPTED = 130

CACHE_MARGIN_SECONDS = 300
CACHE_MARGIN_RATIO = 0.2
CACHE_VERSION = 1
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


# -- options shared with `broker mcp` ---------------------------------------------------


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--url``, ``--token``, ``--token-file``, ``--timeout`` (and their environment)."""
    for option in reversed(
        [
            click.option(
                "--url",
                envvar="BROKER_URL",
                required=True,
                help="The broker's base URL [env BROKER_URL].",
            ),
            click.option(
                "--token",
                envvar="BROKER_TOKEN",
                help="The agent's bearer token [env BROKER_TOKEN]. Prefer the environment "
                "or --token-file: a command line is visible to other local users.",
            ),
            click.option(
                "--token-file",
                envvar="BROKER_TOKEN_FILE",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Read the token from this file before every call (rotating OIDC or "
                "Kubernetes service-account tokens) [env BROKER_TOKEN_FILE].",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=1, max=300),
                default=10.0,
                show_default=True,
                help="Seconds to wait for each answer from the broker.",
            ),
        ]
    ):
        command = option(command)
    return command


def token_source(token: str | None, token_file: Path | None) -> Callable[[], str]:
    """A function returning the current agent token (usage error when none is given)."""
    if token and token_file:
        raise click.UsageError("give --token or --token-file, not both")
    if token:
        fixed = token.strip()
        return lambda: fixed
    if token_file is not None:
        path = token_file

        def read() -> str:
            from broker.client import BrokerClientError

            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise BrokerClientError(
                    f"cannot read the token file {path}: {e.strerror}", "invalid_argument"
                ) from None

        return read
    raise click.UsageError("no agent token: set BROKER_TOKEN or BROKER_TOKEN_FILE")


def make_client(url: str, tokens: Callable[[], str], timeout: float) -> BrokerClient:
    from broker.client import BrokerClient, BrokerClientError

    try:
        return BrokerClient(url, token_provider=tokens, timeout=timeout)
    except BrokerClientError as e:
        raise click.UsageError(e.message) from None


def token_identity(token: str) -> str:
    """Who a token names, for cache keys: ``iss`` + ``sub`` (+ ``aud``) of a JWT, read
    without verification (the broker verifies; this only separates identities). A token
    that is not a JWT is represented by its SHA-256, never by itself."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            payload = parts[1] + "=" * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(payload))
        except (ValueError, TypeError):
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("sub"), str):
            audience = claims.get("aud")
            return json.dumps([claims.get("iss"), claims["sub"], audience], sort_keys=True)
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


# -- the local cache --------------------------------------------------------------------


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-credential-broker"


class LocalCache:
    """Credentials and open request ids on local disk, one 0600 file per request key.

    Files that are not ours or are readable by others are ignored, never trusted. A
    per-key lock file serialises concurrent ``credential_process`` calls, so a burst of
    SDK refreshes opens one escalation, not several.
    """

    def __init__(
        self,
        directory: Path,
        clock: Callable[[], float] = time.time,
        warn: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.warn = warn

    @staticmethod
    def key(url: str, identity: str, request: Mapping[str, object]) -> str:
        material = json.dumps(
            {"url": url, "identity": identity, "request": request}, sort_keys=True
        )
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.directory.stat()
        if info.st_uid != os.getuid():
            raise OSError(f"{self.directory} belongs to another user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def read(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
                return None
            try:
                entry = json.loads(handle.read(1_000_000))
            except ValueError:
                return None
        if not isinstance(entry, dict) or entry.get("version") != CACHE_VERSION:
            return None
        return entry

    def write(self, key: str, entry: Mapping[str, Any]) -> None:
        """Replace the key's entry atomically; a cache that cannot be written only warns
        (the credentials are still handed out, just not remembered)."""
        path = self._path(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self._ensure_directory()
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": CACHE_VERSION, **entry}, handle)
            os.replace(temporary, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self.warn(f"warning: cannot write the cache in {self.directory}: {e.strerror or e}")

    def drop(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def issued(self, key: str) -> Issued | None:
        """Cached credentials still fresh (before their expiry minus the safety margin)."""
        from broker.client import BrokerClientError, Issued

        entry = self.read(key)
        if entry is None or entry.get("kind") != "issued":
            return None
        fresh_until = entry.get("fresh_until")
        if not isinstance(fresh_until, int | float) or fresh_until <= self.clock():
            return None
        body = entry.get("issued")
        try:
            return Issued.from_json(body) if isinstance(body, dict) else None
        except BrokerClientError:
            return None

    def put_issued(self, key: str, issued: Issued) -> None:
        now = self.clock()
        expires = issued.expires_at.timestamp()
        margin = max(CACHE_MARGIN_SECONDS, CACHE_MARGIN_RATIO * (expires - now))
        if expires - margin <= now:
            self.drop(key)
            return
        self.write(
            key, {"kind": "issued", "fresh_until": expires - margin, "issued": issued.to_json()}
        )

    def pending(self, key: str) -> str | None:
        """The id of an open request for the same key, if one was left waiting."""
        entry = self.read(key)
        if entry is None or entry.get("kind") != "pending":
            return None
        request_id, expires = entry.get("request_id"), entry.get("expires_at")
        if not isinstance(request_id, str) or not isinstance(expires, int | float):
            return None
        return request_id if expires > self.clock() else None

    def put_pending(self, key: str, request_id: str, expires_at: float) -> None:
        self.write(key, {"kind": "pending", "request_id": request_id, "expires_at": expires_at})

    @contextlib.contextmanager
    def lock(self, key: str, waiting: Callable[[], None]) -> Iterator[None]:
        """Hold the key's lock; call ``waiting`` once if another process holds it."""
        try:
            self._ensure_directory()
            fd = os.open(self.directory / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            self.warn(f"warning: cannot lock the cache in {self.directory}: {e.strerror or e}")
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


# -- progress on stderr -----------------------------------------------------------------


def describe(state: RequestState, now: float) -> str:
    """One status line for a request, e.g. ``pending 1/2 approvals`` (pure)."""
    from broker.client import format_seconds

    if state.status == "pending":
        left = format_seconds(state.expires_at.timestamp() - now)
        return (
            f"{state.request_id}: pending {state.approvals_received}/"
            f"{state.approvals_required} approvals (request expires in {left})"
        )
    if state.status == "approved":
        delay = state.delay_left(now)
        if delay > 0:
            return f"{state.request_id}: approved, delay ends in {format_seconds(delay)}"
        return f"{state.request_id}: approved, collecting"
    reason = f": {state.reason}" if state.reason else ""
    return f"{state.request_id}: {state.status}{reason}"


class Progress:
    """The live status line: redrawn every second on a terminal, one line per change
    otherwise (logs of CI jobs stay readable)."""

    def __init__(self, stream: IO[str], clock: Callable[[], float], live: bool) -> None:
        self.stream = stream
        self.clock = clock
        self.live = live
        self.state: RequestState | None = None
        self._last = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, state: RequestState) -> None:
        self.state = state
        if self.live:
            self._draw()
            if self._thread is None:
                self._thread = threading.Thread(target=self._tick, daemon=True)
                self._thread.start()
            return
        line = describe(state, self.clock())
        if line.split(" (")[0] != self._last.split(" (")[0]:
            self.stream.write(line + "\n")
            self.stream.flush()
        self._last = line

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._clear()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def _draw(self) -> None:
        if self.state is not None:
            self.stream.write("\r\x1b[K" + describe(self.state, self.clock()))
            self.stream.flush()

    def _clear(self) -> None:
        if self.live and self.state is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


# -- the command ------------------------------------------------------------------------


class DurationType(click.ParamType[int]):
    """Seconds as ``900`` or ``15m``, ``1h``, ``1h30m``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            seconds = int(text)
        else:
            match = _DURATION.fullmatch(text)
            if not text or match is None:
                self.fail(f"'{value}' is not a duration such as 900, 15m or 1h30m", param, ctx)
            h, m, s = (int(g or 0) for g in match.groups())
            seconds = h * 3600 + m * 60 + s
        if seconds <= 0:
            self.fail("the duration must be positive", param, ctx)
        return seconds


FORMATS = ("credential-process", "env", "json", "vault")


@click.command("creds")
@click.option("--service", required=True, help="The scope's service, e.g. payments.")
@click.option("--environment", required=True, help="The scope's environment, e.g. prod.")
@click.option("--region", help="AWS region (required for --backend aws).")
@click.option(
    "--tier", type=click.Choice(["read", "write", "delete"]), default="read", show_default=True
)
@click.option(
    "--backend",
    type=click.Choice(["aws", "vault", "database"]),
    default="aws",
    show_default=True,
)
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="Narrow to this ARN, KV path or schema.table (repeatable).",
)
@click.option("--duration", type=DurationType(), help="Lifetime wanted (clamped to the tier's).")
@click.option("--justification", default="", help="Why: shown to the approvers.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="json",
    show_default=True,
    help="credential-process (AWS), env (export lines), json, vault (VAULT_ADDR/VAULT_TOKEN).",
)
@connection_options
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0),
    help="Give up waiting for approval after this many seconds (exit 7; the request "
    "stays open and the next run resumes it). Default: until it is decided or expires.",
)
@click.option(
    "--no-wait", is_flag=True, help="Do not wait for approval (same as --wait-timeout 0)."
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Use the local cache of credentials and open requests.",
)
@click.option(
    "--cache-dir",
    envvar="BROKER_CACHE_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the cache lives [env BROKER_CACHE_DIR; default $XDG_CACHE_HOME/"
    "agent-credential-broker].",
)
def creds_command(
    service: str,
    environment: str,
    region: str | None,
    tier: str,
    backend: str,
    resources: tuple[str, ...],
    duration: int | None,
    justification: str,
    output_format: str,
    url: str,
    token: str | None,
    token_file: Path | None,
    timeout: float,
    wait_timeout: float | None,
    no_wait: bool,
    cache: bool,
    cache_dir: Path | None,
) -> None:
    """Print short-lived credentials for a scope tier.

    read is issued at once; write and delete wait for approval (status on stderr) and
    are then collected. Exit codes: 0 ok, 1 error, 2 usage, 3 denied, 4 expired,
    5 frozen, 6 broker unreachable, 7 still pending, 130 interrupted.
    """
    if output_format == "credential-process" and backend != "aws":
        raise click.UsageError("--format credential-process needs --backend aws")
    if output_format == "vault" and backend != "vault":
        raise click.UsageError("--format vault needs --backend vault")
    tokens = token_source(token, token_file)
    request: dict[str, object] = {
        "service": service,
        "environment": environment,
        "region": region,
        "tier": tier,
        "backend": backend,
        "resources": list(resources),
        "duration": duration,
    }
    store = LocalCache(cache_dir or default_cache_dir(), warn=_warn) if cache else None
    key = LocalCache.key(url.rstrip("/"), token_identity(_first(tokens)), request) if store else ""
    if store is not None:
        hit = store.issued(key)
        if hit is not None:
            _print(hit, output_format)
            return
    client = make_client(url, tokens, timeout)
    progress = Progress(sys.stderr, time.time, live=sys.stderr.isatty())
    try:
        issued = _obtain(
            client,
            store,
            key,
            request,
            justification,
            0.0 if no_wait else wait_timeout,
            progress,
        )
    except KeyboardInterrupt:
        progress.close()
        click.echo(
            "interrupted; an open request stays open: run the same command again to keep "
            "waiting for it",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    except _Failed as failed:
        progress.close()
        click.echo(failed.text, err=True)
        sys.exit(failed.exit_code)
    progress.close()
    _print(issued, output_format)


def _first(tokens: Callable[[], str]) -> str:
    """The token now, or a usage error (an unreadable token file) before any request."""
    from broker.client import BrokerClientError

    try:
        return tokens()
    except BrokerClientError as e:
        raise click.UsageError(e.message) from None


def _warn(text: str) -> None:
    click.echo(text, err=True)


class _Failed(Exception):
    def __init__(self, text: str, exit_code: int) -> None:
        super().__init__(text)
        self.text = text
        self.exit_code = exit_code


def _obtain(
    client: BrokerClient,
    store: LocalCache | None,
    key: str,
    request: dict[str, Any],
    justification: str,
    wait_timeout: float | None,
    progress: Progress,
) -> Issued:
    """Credentials from the broker (resuming an open request), cached; or ``_Failed``."""
    from broker.client import BrokerClientError

    lock: contextlib.AbstractContextManager[None] = (
        store.lock(key, lambda: progress.note("another `broker creds` is asking the same; waiting"))
        if store is not None
        else contextlib.nullcontext()
    )
    with lock:
        try:
            if store is not None:
                hit = store.issued(key)  # a process we waited for may have cached it
                if hit is not None:
                    return hit
            issued = _resume(client, store, key, wait_timeout, progress)
            if issued is None:
                issued = _request(
                    client, store, key, request, justification, wait_timeout, progress
                )
            if store is not None:
                store.put_issued(key, issued)
            return issued
        except BrokerClientError as e:
            raise _Failed(*_explain(e)) from None


def _request(
    client: BrokerClient,
    store: LocalCache | None,
    key: str,
    request: dict[str, Any],
    justification: str,
    wait_timeout: float | None,
    progress: Progress,
) -> Issued:
    """Ask the broker; for an escalation, remember the request id and wait for it."""
    from broker.client import Issued

    outcome = client.request(
        request["service"],
        request["environment"],
        request["tier"],
        request["backend"],
        request["region"],
        request["resources"],
        request["duration"],
        justification,
    )
    if isinstance(outcome, Issued):
        return outcome
    if store is not None:
        store.put_pending(key, outcome.request_id, outcome.expires_at.timestamp())
    progress.note(
        f"request {outcome.request_id} needs {outcome.approvals_required} "
        f"approval(s); the approvers were notified: {outcome.approval_url}"
    )
    return _complete(client, store, key, outcome.request_id, wait_timeout, progress)


def _resume(
    client: BrokerClient,
    store: LocalCache | None,
    key: str,
    wait_timeout: float | None,
    progress: Progress,
) -> Issued | None:
    """Finish the open request a previous run left behind, if there is one."""
    from broker.client import BrokerClientError

    request_id = store.pending(key) if store is not None else None
    if store is None or request_id is None:
        return None
    try:
        client.status(request_id)
    except BrokerClientError as e:
        if e.code != "not_found":
            raise
        store.drop(key)  # another broker, or purged: ask afresh
        return None
    progress.note(f"resuming request {request_id}: {client.approval_url(request_id)}")
    return _complete(client, store, key, request_id, wait_timeout, progress)


def _complete(
    client: BrokerClient,
    store: LocalCache | None,
    key: str,
    request_id: str,
    wait_timeout: float | None,
    progress: Progress,
) -> Issued:
    from broker.client import Denied, Expired

    try:
        return client.complete(request_id, wait_timeout, progress.update)
    except (Denied, Expired):
        if store is not None:
            store.drop(key)  # decided: reported now, and the next run asks afresh
        raise


def _explain(error: BrokerClientError) -> tuple[str, int]:
    """The stderr line and exit code for a client error (never a secret: messages are
    the broker's, which never carry one)."""
    from broker.client import ApprovalPending, BrokerUnreachable, Denied, Expired, Frozen

    message = error.message
    where = f" (request {error.request_id})" if error.request_id else ""
    if isinstance(error, BrokerUnreachable):
        return f"unreachable: {message}", EXIT_UNREACHABLE
    if isinstance(error, Frozen):
        text = message if message.startswith("frozen") else f"frozen: {message}"
        return text, EXIT_FROZEN
    if isinstance(error, Denied):
        text = message if message.startswith("denied") else f"denied: {message}"
        return text + where, EXIT_DENIED
    if isinstance(error, Expired):
        return f"expired: {message}", EXIT_EXPIRED
    if isinstance(error, ApprovalPending):
        return (
            f"pending: {message}; run the same command again to keep waiting",
            EXIT_PENDING,
        )
    retry = f"; retry after {error.retry_after} s" if error.retry_after else ""
    return f"error: {message} ({error.code}){retry}", EXIT_ERROR


def _print(issued: Issued, output_format: str) -> None:
    from broker.client import BrokerClientError

    try:
        if output_format == "credential-process":
            text = json.dumps(issued.credential_process()) + "\n"
        elif output_format == "json":
            text = json.dumps(issued.to_json(), indent=2) + "\n"
        else:
            text = issued.export_lines()
    except BrokerClientError as e:
        click.echo(_explain(e)[0], err=True)
        sys.exit(EXIT_ERROR)
    click.echo(text, nl=False)


@click.command("mcp")
@connection_options
@click.option(
    "--aws-credentials-file",
    envvar="AWS_SHARED_CREDENTIALS_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The AWS credentials file the tools write profiles to [env "
    "AWS_SHARED_CREDENTIALS_FILE; default ~/.aws/credentials].",
)
@click.option(
    "--output-dir",
    envvar="BROKER_OUTPUT_DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where Vault/database env files go [env BROKER_OUTPUT_DIR; default "
    "$XDG_RUNTIME_DIR/agent-credential-broker/credentials].",
)
def mcp_command(
    url: str,
    token: str | None,
    token_file: Path | None,
    timeout: float,
    aws_credentials_file: Path | None,
    output_dir: Path | None,
) -> None:
    """Serve the credential tools to an AI agent over MCP (stdio).

    Tools: request_credentials, request_elevation, request_status, list_my_scopes.
    Credentials are written to an AWS profile or a 0600 env file, never returned.
    """
    client = make_client(url, token_source(token, token_file), timeout)
    from broker.mcp_server import run

    run(client, aws_credentials_file, output_dir)
