"""What the kill switch did, per backend: for the CLI's lines, the API's JSON and the audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackendOutcome:
    revoked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    collateral: list[str] = field(default_factory=list)  # what compaction denies beyond

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors


@dataclass
class RevocationReport:
    target: str
    frozen: str | None
    backends: dict[str, BackendOutcome]
    cache_evicted: int
    cancelled: int
    alert: str

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.backends.values())

    def lines(self) -> list[str]:
        lines = [f"Revoked {self.target}."]
        lines.append(f"  frozen:     {self.frozen or 'no (a single request)'}")
        for backend, outcome in sorted(self.backends.items()):
            detail = f"{outcome.revoked} revoked"
            if backend == "aws":
                detail += f", revocation policy on {len(outcome.roles)} role(s)"
            if outcome.failed:
                detail += f", {outcome.failed} FAILED"
            lines.append(f"  {backend + ':':11} {detail}")
            lines.extend(f"      UNREACHED: {error}" for error in outcome.errors)
            lines.extend(f"      role {role}" for role in outcome.roles)
            lines.extend(f"      COARSENED: {text}" for text in outcome.collateral)
        lines.append(f"  cache:      {self.cache_evicted} cached credential(s) evicted here")
        lines.append(f"  requests:   {self.cancelled} pending request(s) cancelled")
        lines.append(f"  alert:      {self.alert}")
        if not self.ok:
            lines.append(
                "NOT COMPLETE: some backends could not be reached; run it again "
                "when they answer (the freeze is in place)."
            )
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "frozen": self.frozen,
            "complete": self.ok,
            "backends": {
                name: {
                    "revoked": o.revoked,
                    "failed": o.failed,
                    "errors": o.errors,
                    "roles": o.roles,
                    "collateral": o.collateral,
                }
                for name, o in self.backends.items()
            },
            "cache_evicted": self.cache_evicted,
            "cancelled": self.cancelled,
            "alert": self.alert,
        }
