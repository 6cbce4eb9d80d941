"""Key material the broker keeps for itself in its state directory.

- the Ed25519 key that signs broker-minted agent tokens (``broker token mint``);
- the secret that signs approval links and CSRF tokens.

Each is generated on first start and written with mode 0600; an existing file with looser
permissions is refused rather than silently used.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.errors import ConfigError

AGENT_KEY_FILE = "agent-signing-key.pem"
LINK_SECRET_FILE = "link-secret"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two workers starting at once must not both write a different key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


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


@dataclass(frozen=True)
class BrokerKeys:
    agent_signing_key: Ed25519PrivateKey
    link_secret: bytes

    @cached_property
    def agent_public_key(self) -> Ed25519PublicKey:
        return self.agent_signing_key.public_key()

    @cached_property
    def agent_key_id(self) -> str:
        """A short fingerprint of the public key, used as the JWT ``kid``."""
        raw = self.agent_public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode().rstrip("=")


def load_keys(state_dir: Path) -> BrokerKeys:
    """Load the broker's keys from ``state_dir``, creating them on first start."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    agent_pem = _load_or_create(state_dir / AGENT_KEY_FILE, pem)
    key = serialization.load_pem_private_key(agent_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{state_dir / AGENT_KEY_FILE} is not an Ed25519 private key")
    link = _load_or_create(state_dir / LINK_SECRET_FILE, secrets.token_bytes(32))
    if len(link) < 32:
        raise ConfigError(f"{state_dir / LINK_SECRET_FILE} is shorter than 32 bytes")
    return BrokerKeys(agent_signing_key=key, link_secret=link)
