"""The audit hash chain: each record's hash covers its content and the previous hash.

Editing a record changes its hash; removing or reordering records breaks the link from
the next record to its predecessor; removing records at the end leaves the chain shorter
than its head (the stored sequence number and hash of the last record). :func:`verify_chain`
names the first record where the chain stops holding.

What it cannot prove: someone able to write the database can recompute every hash and
the head after an edit. Comparing with a copy kept elsewhere (the stream, an export in a
SIEM or WORM store) catches that; see docs/audit.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.store.records import AuditRecord

GENESIS = "0" * 64


def canonical(record: AuditRecord, seq: int, prev_hash: str) -> bytes:
    """The exact bytes hashed for a record: every field but the hash itself."""
    body: dict[str, Any] = {
        "seq": seq,
        "at": repr(float(record.at)),
        "actor": record.actor,
        "action": record.action,
        "outcome": record.outcome,
        "reason": record.reason,
        "service": record.service,
        "environment": record.environment,
        "tier": record.tier,
        "request_id": record.request_id,
        "details": record.details,
        "prev_hash": prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def record_hash(record: AuditRecord, seq: int, prev_hash: str) -> str:
    return hashlib.sha256(canonical(record, seq, prev_hash)).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of a walk: how many records were read, and the first bad one if any."""

    records: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""
    record: AuditRecord | None = None  # the first bad record, when it still exists


def verify_chain(
    records: Iterable[AuditRecord],
    head_seq: int | None = None,
    head_hash: str | None = None,
) -> ChainReport:
    """Walk records in sequence order; report the first edited, removed or reordered one.

    ``head_seq`` and ``head_hash`` are the chain's head as stored: the walk must end there.
    Memory stays bounded: records are consumed one at a time.
    """
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    for record in records:
        count += 1
        if record.seq is None or record.hash is None or record.prev_hash is None:
            return ChainReport(count, False, record.seq, "a record has no sequence or hash")
        if record.seq != expected_seq:
            if record.seq > expected_seq:
                gap = (
                    f"record {expected_seq} is missing"
                    if record.seq == expected_seq + 1
                    else f"records {expected_seq} to {record.seq - 1} are missing"
                )
                problem = f"{gap} (the next record is {record.seq}): removed"
                return ChainReport(count, False, expected_seq, problem)
            problem = f"record {record.seq} appears out of order (expected {expected_seq})"
            return ChainReport(count, False, record.seq, problem, record)
        if record.prev_hash != expected_prev:
            problem = (
                f"record {record.seq} does not follow record {record.seq - 1}: records were "
                "reordered, or one before it was removed or rewritten"
            )
            return ChainReport(count, False, record.seq, problem, record)
        if record_hash(record, record.seq, record.prev_hash) != record.hash:
            problem = f"record {record.seq} was edited: its content no longer matches its hash"
            return ChainReport(count, False, record.seq, problem, record)
        expected_prev = record.hash
        expected_seq += 1
    last = expected_seq - 1
    if head_seq is not None and head_seq != last:
        if head_seq > last:
            problem = (
                f"the chain ends at record {last} but its head says {head_seq}: "
                f"records from {last + 1} on were removed"
            )
            return ChainReport(count, False, last + 1, problem)
        problem = f"the chain continues past its head ({head_seq}): records were added"
        return ChainReport(count, False, head_seq + 1, problem)
    if head_hash is not None and head_hash != expected_prev:
        problem = f"record {last} is not the one the head names: it was replaced"
        return ChainReport(count, False, last, problem)
    return ChainReport(count, True)
