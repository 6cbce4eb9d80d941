"""Recognise field names that hold secrets, so audit details and log fields never carry them.

The audit recorder refuses such fields (a programming error: the caller passed a secret);
the JSON log formatter replaces their values. Correlation ids (access key id, token
accessor, lease id) are public and deliberately not matched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SECRET_NAMES = frozenset(
    {
        "secret",
        "secrets",
        "secret_key",
        "secret_access_key",
        "session_token",
        "token",
        "password",
        "passwd",
        "private_key",
        "client_secret",
        "signing_secret",
        "webhook_url",
        "credentials",
        "authorization",
        "cookie",
    }
)
JSON_SCALARS = frozenset({str, int, float, bool, type(None)})  # JSON keeps them as they are
SECRET_SUFFIXES = ("_secret", "_token", "_password", "_private_key", "_secret_key")
REDACTED = "[redacted]"


def is_secret_name(name: str) -> bool:
    """True for a field name that holds a secret ("password", "vault_token", "X-Token")."""
    key = name.lower().replace("-", "_")
    return key in SECRET_NAMES or key.endswith(SECRET_SUFFIXES)


def secret_fields(value: Any, path: str = "") -> list[str]:
    """The dotted paths of every secret-named key in nested mappings and lists."""
    found: list[str] = []
    if type(value) in JSON_SCALARS:
        return found  # most values: no ABC checks needed
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if is_secret_name(str(key)):
                found.append(where)
            else:
                found.extend(secret_fields(item, where))
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, item in enumerate(value):
            found.extend(secret_fields(item, f"{path}[{index}]"))
    return found


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-named keys replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if is_secret_name(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
