"""The audit hash chain: each record's hash covers its content and the previous hash.

Editing a record changes its hash; removing or reordering records breaks the link from
the next record to its predecessor. :func:`verify_chain` names the first record where the
chain stops holding.
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
    records: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(records: Iterable[AuditRecord], head_seq: int | None = None) -> ChainReport:
    """Walk records in sequence order; report the first edited, removed or reordered one."""
    expected_prev = GENESIS
    expected_seq = 1
    count = 0
    for record in records:
        count += 1
        assert record.seq is not None and record.hash is not None
        if record.seq != expected_seq:
            if record.seq > expected_seq:
                problem = f"record {expected_seq} is missing (next is {record.seq}): removed"
                return ChainReport(count, False, expected_seq, problem)
            problem = f"record {record.seq} appears out of order (expected {expected_seq})"
            return ChainReport(count, False, record.seq, problem)
        if record.prev_hash != expected_prev:
            problem = (
                f"record {record.seq} does not follow record {record.seq - 1}: "
                "a record before it was edited, removed or reordered"
            )
            return ChainReport(count, False, record.seq, problem)
        if record_hash(record, record.seq, record.prev_hash) != record.hash:
            return ChainReport(
                count,
                False,
                record.seq,
                f"record {record.seq} was edited: its content no longer matches its hash",
            )
        expected_prev = record.hash
        expected_seq += 1
    if head_seq is not None and head_seq != expected_seq - 1:
        missing = expected_seq
        return ChainReport(
            count,
            False,
            missing,
            f"the chain ends at record {expected_seq - 1} but its head says "
            f"{head_seq}: records from {missing} on were removed",
        )
    return ChainReport(count, True)
