"""`broker audit export`: records since a time, as JSON lines for a SIEM.

``--since`` takes an ISO 8601 date or date-time (UTC unless it names an offset) or a
duration back from now (``24h``, ``7d``, ``1h30m``). Pure parsing lives here; the command
only wires options to it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import IO

from broker.audit.recorder import record_line
from broker.store.base import AuditStore
from broker.store.records import AuditRecord

DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
UNITS = (7 * 86400, 86400, 3600, 60, 1)


def parse_since(text: str, now: float) -> float:
    """Seconds since the epoch for ``text``; ValueError with a readable reason otherwise."""
    value = text.strip()
    match = DURATION.fullmatch(value)
    if value and match:
        seconds = sum(
            int(part or 0) * unit for part, unit in zip(match.groups(), UNITS, strict=True)
        )
        return now - seconds
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"'{text[:40]}' is neither an ISO date/time (2024-05-01, 2024-05-01T12:00Z) "
            "nor a duration (24h, 7d, 1h30m)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    at = moment.timestamp()
    if at > now:
        raise ValueError(f"'{text[:40]}' is in the future")
    return at


def records_since(
    store: AuditStore, since: float | None, after_seq: int = 0, batch: int = 1000
) -> Iterator[AuditRecord]:
    return store.audit_records(since=since, after_seq=after_seq, batch=batch)


def write_jsonl(records: Iterator[AuditRecord], out: IO[str]) -> tuple[int, int | None]:
    """Write one JSON line per record; return (count, last seq)."""
    count = 0
    last: int | None = None
    for record in records:
        out.write(record_line(record) + "\n")
        count += 1
        last = record.seq
    return count, last
