"""The broker's exception root and its subclasses.

Every error the broker raises on purpose derives from :class:`BrokerError`. Each class
carries the HTTP status and the stable machine-readable ``code`` the API returns, so one
error handler turns any of them into ``{error, message, request_id}``. Messages must never
contain a secret: they are shown to clients and written to logs.

Third-party errors (botocore, hvac, SQLAlchemy) are translated at the boundary that calls
the library, with ``raise ... from e``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


class BrokerError(Exception):
    """Root of every error the broker raises deliberately."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, object]:
        """Extra JSON fields for the error response (besides error, message, request_id)."""
        return {}


@dataclass(frozen=True)
class Problem:
    """One problem found in a file, positioned for `file:line:column: reason` output."""

    path: str
    line: int
    column: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.reason}"

    def in_file(self) -> str:
        """The same, naming the file alone: what callers are shown (not the server's
        directories; operators get the full path from the log and `broker scopes validate`)."""
        return f"{PurePath(self.path).name}:{self.line}:{self.column}: {self.reason}"


class InvalidFileError(BrokerError):
    """A scope or config file has problems; carries all of them, not only the first."""

    status = 400
    code = "invalid_file"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems[:5]))
        self.problems = problems


class ConfigError(BrokerError):
    """The broker's own settings are invalid: the broker refuses to start."""

    code = "invalid_config"


class _AboutAField(BrokerError):
    """An error about one field of the request, named in the answer (``field``) if known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def body(self) -> dict[str, object]:
        return {"field": self.field} if self.field else {}


class BadRequest(_AboutAField):
    status = 400
    code = "bad_request"


class NotFound(_AboutAField):
    status = 404
    code = "not_found"


class Unauthenticated(BrokerError):
    status = 401
    code = "unauthenticated"


class Forbidden(BrokerError):
    status = 403
    code = "forbidden"


class Frozen(Forbidden):
    """The agent or scope is frozen by the kill switch or the circuit breaker."""

    code = "frozen"


class ChangeFreeze(Forbidden):
    """A write/delete request falls inside a change-freeze window of the scope."""

    code = "change_freeze"

    def __init__(self, message: str, window: str) -> None:
        super().__init__(message)
        self.window = window

    def body(self) -> dict[str, object]:
        return {"window": self.window}


class BlastRadiusExceeded(Forbidden):
    code = "blast_radius_exceeded"


class ResourcesRequired(BadRequest):
    """A write/delete request that names nothing: the agent has not said what it will
    change. A malformed request, not an attempt at too much: the breaker does not count it."""

    code = "resources_required"

    def __init__(self, message: str) -> None:
        super().__init__(message, "resources")


class Conflict(BrokerError):
    status = 409
    code = "conflict"


class ScopeInvalid(Conflict):
    """The scope's file is broken on disk: the scope is not served (not even its last good
    version) until the file is fixed. ``problems`` say where (``file:line:column: reason``,
    the file by its name only)."""

    code = "scope_invalid"

    def __init__(self, service: str, problems: list[str]) -> None:
        first = problems[0] if problems else "its file has problems"
        super().__init__(
            f"scope {service} is invalid and not served until its file is fixed: {first}"
        )
        self.problems = problems[:10]

    def body(self) -> dict[str, object]:
        return {"problems": self.problems}


class RequestNotReady(Conflict):
    """Credentials of an escalation cannot be collected yet (pending, delay running...)."""

    code = "not_ready"


class Gone(BrokerError):
    status = 410
    code = "gone"


class PayloadTooLarge(BrokerError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(BrokerError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(BrokerError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def body(self) -> dict[str, object]:
        return {"retry_after": self.retry_after}


class UpstreamUnavailable(BrokerError):
    """An upstream (STS, Vault, the database engine) failed; nothing was issued."""

    status = 503
    code = "upstream_unavailable"

    def __init__(self, message: str, backend: str) -> None:
        super().__init__(message)
        self.backend = backend

    def body(self) -> dict[str, object]:
        return {"backend": self.backend}


class PolicyTooLarge(BrokerError):
    """A compiled session policy does not fit STS's limit; it is never truncated."""

    status = 400
    code = "policy_too_large"

    def __init__(self, message: str, tier: str) -> None:
        super().__init__(message)
        self.tier = tier


class StoreUnavailable(BrokerError):
    status = 503
    code = "store_unavailable"
