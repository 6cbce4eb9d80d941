"""Key material the broker keeps for itself in its state directory.

- the Ed25519 key that signs broker-minted agent tokens (``broker token mint``);
- the public halves of signing keys it has retired (``broker token rotate-key``): tokens
  they signed are still accepted until they can no longer be valid;
- the secret that signs approval links and CSRF tokens.

Each secret is generated on first start and written with mode 0600; an existing file with
looser permissions is refused rather than silently used.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.errors import ConfigError

AGENT_KEY_FILE = "agent-signing-key.pem"
RETIRED_KEYS_FILE = "agent-retired-keys.pem"
LINK_SECRET_FILE = "link-secret"
_RETIRED_HEADER = re.compile(r"# kid=(\S+) retired=(\S+) verify-until=(\S+)")


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two workers starting at once must not both write a different key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _read_private(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    # Group read is allowed: a Kubernetes Secret mounted with fsGroup is 0440 or 0640.
    if mode & 0o037:
        raise ConfigError(f"{path} is readable or writable by others (mode {mode:o}); chmod 600 it")
    return path.read_bytes()


def _load_or_create(path: Path, make: bytes) -> bytes:
    try:
        _write_private(path, make)
    except FileExistsError:
        pass
    return _read_private(path)


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key, used as the JWT ``kid``."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode().rstrip("=")


@dataclass(frozen=True)
class RetiredKey:
    """A signing key no longer used to sign, whose tokens are accepted until ``verify_until``
    (its retirement plus the longest lifetime a token may have)."""

    public_key: Ed25519PublicKey
    retired_at: float
    verify_until: float

    @cached_property
    def key_id(self) -> str:
        return key_id(self.public_key)


@dataclass(frozen=True)
class BrokerKeys:
    agent_signing_key: Ed25519PrivateKey
    link_secret: bytes
    retired: tuple[RetiredKey, ...] = ()

    @cached_property
    def agent_public_key(self) -> Ed25519PublicKey:
        return self.agent_signing_key.public_key()

    @cached_property
    def agent_key_id(self) -> str:
        return key_id(self.agent_public_key)

    def verification_key(self, kid: str | None, now: float) -> Ed25519PublicKey | None:
        """The public key for a token's ``kid``: the current one, or a retired one while
        tokens it signed may still be valid."""
        if kid == self.agent_key_id:
            return self.agent_public_key
        for retired in self.retired:
            if retired.key_id == kid and now < retired.verify_until:
                return retired.public_key
        return None


def _private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_keys(state_dir: Path) -> BrokerKeys:
    """Load the broker's keys from ``state_dir``, creating them on first start."""
    agent_pem = _load_or_create(
        state_dir / AGENT_KEY_FILE, _private_pem(Ed25519PrivateKey.generate())
    )
    key = serialization.load_pem_private_key(agent_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{state_dir / AGENT_KEY_FILE} is not an Ed25519 private key")
    link = _load_or_create(state_dir / LINK_SECRET_FILE, secrets.token_bytes(32))
    if len(link) < 32:
        raise ConfigError(f"{state_dir / LINK_SECRET_FILE} is shorter than 32 bytes")
    return BrokerKeys(
        agent_signing_key=key,
        link_secret=link,
        retired=_read_retired(state_dir / RETIRED_KEYS_FILE),
    )


def rotate_agent_key(state_dir: Path, token_max_ttl: int, now: float) -> tuple[str, RetiredKey]:
    """Sign with a new key from now on; keep accepting the old key's tokens until they
    must have expired (``token_max_ttl`` after now). Retired keys past that are dropped.

    The retired key is written before the new key replaces it, so a crash in between leaves
    the old key current (and also retired): never a token that stops being accepted early.
    Returns the new key's id and what was retired.
    """
    current = load_keys(state_dir)
    retired = RetiredKey(current.agent_public_key, now, now + token_max_ttl)
    kept = [r for r in current.retired if r.verify_until > now and r.key_id != retired.key_id]
    _replace_private(state_dir / RETIRED_KEYS_FILE, _retired_text([*kept, retired]).encode())
    new_key = Ed25519PrivateKey.generate()
    _replace_private(state_dir / AGENT_KEY_FILE, _private_pem(new_key))
    return key_id(new_key.public_key()), retired


def _replace_private(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, mode 0600."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    _write_private(temporary, data)
    os.replace(temporary, path)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retired_text(keys: list[RetiredKey]) -> str:
    lines = [
        "# Retired agent-signing keys (broker token rotate-key): tokens they signed are",
        "# accepted until verify-until. Public keys only: nothing here can sign.",
    ]
    for key in keys:
        pem = key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        lines.append(
            f"# kid={key.key_id} retired={_iso(key.retired_at)} "
            f"verify-until={_iso(key.verify_until)}"
        )
        lines.append(pem.decode().strip())
    return "\n".join(lines) + "\n"


def _read_retired(path: Path) -> tuple[RetiredKey, ...]:
    """The retired keys in ``path`` (none when it does not exist); a malformed file is
    refused, naming its line, rather than silently dropping keys."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the retired agent-signing keys ({e})") from e
    keys: list[RetiredKey] = []
    header: tuple[int, re.Match[str]] | None = None
    block: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _RETIRED_HEADER.fullmatch(line.strip())
        if match:
            header = (number, match)
        elif block or line.startswith("-----BEGIN"):
            block.append(line)
            if line.startswith("-----END"):
                if header is None:
                    raise ConfigError(f"{path}:{number}: a key without its '# kid=...' line")
                keys.append(_retired_key(path, header, "\n".join(block)))
                header, block = None, []
        elif line.strip() and not line.startswith("#"):
            raise ConfigError(f"{path}:{number}: unexpected text in the retired-keys file")
    if block or header is not None:
        raise ConfigError(f"{path}: the last retired key is incomplete")
    return tuple(keys)


def _retired_key(path: Path, header: tuple[int, re.Match[str]], pem: str) -> RetiredKey:
    number, match = header
    try:
        public = serialization.load_pem_public_key(pem.encode())
        retired_at, verify_until = (
            dt.datetime.strptime(match.group(i), "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=dt.UTC)
            .timestamp()
            for i in (2, 3)
        )
    except ValueError as e:
        raise ConfigError(f"{path}:{number}: not a retired key ({e})") from e
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigError(f"{path}:{number}: not an Ed25519 public key")
    key = RetiredKey(public, retired_at, verify_until)
    if key.key_id != match.group(1):
        raise ConfigError(f"{path}:{number}: kid {match.group(1)} does not match the key below it")
    return key
