"""The SourceIdentity of an agent's AWS sessions: one value per principal, within AWS's rules.

SourceIdentity persists through role chaining and is what the kill switch's per-agent deny
(``aws:SourceIdentity``) and the audit name. AWS allows 2 to 64 characters of
``[A-Za-z0-9_+=,.@-]``; principals are longer and hold other characters (``:`` always, ``/``
often). Cutting and replacing alone merged agents (two principals sharing their first 64
characters, or ``acme/app`` and ``acme-app``), so that revoking one denied the other too.

- The broker's own agents, ``agent:NAME`` with a short enough name, keep the readable
  ``agent-NAME`` they always had (NAME is already letters, digits, ``-`` and ``_``).
- Every other principal gets a readable prefix, a ``.`` and 16 base32 characters (80 bits)
  of the principal's SHA-256. No ``agent-NAME`` value holds a ``.``, so the two forms never
  meet, and distinct principals get distinct hashes.
"""

from __future__ import annotations

import base64
import hashlib
import re

MAX_LENGTH = 64  # AWS's limit
HASH_CHARS = 16
_LOCAL = re.compile(r"agent:([A-Za-z0-9_-]+)", re.ASCII)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_+=,.@-]")


def source_identity(principal: str) -> str:
    """The SourceIdentity naming ``principal`` (issuer and subject, broker.identity.model)."""
    local = _LOCAL.fullmatch(principal)
    if local is not None and len("agent-") + len(local.group(1)) <= MAX_LENGTH:
        return f"agent-{local.group(1)}"
    digest = hashlib.sha256(principal.encode()).digest()
    suffix = base64.b32encode(digest).decode().lower()[:HASH_CHARS]
    readable = _NOT_ALLOWED.sub("-", principal.replace(".", "-"))
    return f"{readable[: MAX_LENGTH - HASH_CHARS - 1]}.{suffix}"


def legacy_source_identity(principal: str) -> str:
    """The value sessions issued before distinct values got (cut to 64, characters
    replaced): the kill switch denies it too, until those sessions (12 h at most) are gone.
    Ambiguous, so it may also deny such an old session of an agent that shared it."""
    value = re.sub(r"[^\w+=,.@-]", "-", principal)[:MAX_LENGTH]
    return value if len(value) >= 2 else f"agent-{value}"
