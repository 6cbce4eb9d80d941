"""Does an issuance still stand? What agent-side caches ask before serving a copy.

A pure decision over what the store recorded for one request's credentials and the
freeze (if any) covering its agent or scope: ``active``, ``revoked`` (the kill switch
revoked them), ``frozen`` (nothing of that agent or scope may be used until ``broker
unfreeze``) or ``expired``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from broker.store.records import FreezeRecord, IssuedRecord

Standing = Literal["active", "revoked", "frozen", "expired"]


@dataclass(frozen=True)
class IssuanceState:
    request_id: str
    status: Standing
    reason: str | None
    expires_at: float


def standing(
    request_id: str, records: Sequence[IssuedRecord], freeze: FreezeRecord | None, now: float
) -> IssuanceState:
    """The state of the credentials issued under ``request_id`` (``records`` non-empty)."""
    expires_at = max(r.expires_at for r in records)
    revoked = [r.revoked_at for r in records if r.revoked_at is not None]
    if revoked:
        return IssuanceState(request_id, "revoked", "revoked by the kill switch", expires_at)
    if freeze is not None:
        reason = f"{freeze.describe()} is frozen ({freeze.reason})"
        return IssuanceState(request_id, "frozen", reason, expires_at)
    if expires_at <= now:
        return IssuanceState(request_id, "expired", "the credentials have expired", expires_at)
    return IssuanceState(request_id, "active", None, expires_at)
