"""Where the MCP tools put credentials: an AWS profile or a 0600 env file, never the
model's context. Profiles the broker did not write are never touched."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from broker_client.results import Issued

MANAGED_MARKER = "# managed by agent-credential-broker"
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SECTION = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]\s*$")


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


def default_aws_credentials_file() -> Path:
    return Path(
        os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials"
    )


def default_output_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path.home() / ".cache"
    return base / "agent-credential-broker" / "credentials"
