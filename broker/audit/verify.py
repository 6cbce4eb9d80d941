"""Verify the whole chain in a store, in batches, against the stored head.

The head is read first and the walk stops there, so records appended meanwhile by other
replicas are not mistaken for tampering; records found beyond the head must be covered by
the head as re-read afterwards (every append moves the head in the same transaction).
"""

from __future__ import annotations

from itertools import takewhile

from broker.audit.chain import ChainReport, verify_chain
from broker.store.base import AuditStore

DEFAULT_BATCH = 1000


def verify_store(store: AuditStore, batch: int = DEFAULT_BATCH) -> ChainReport:
    """Walk every record up to the head; name the first edited, removed or reordered one."""
    head = store.audit_head_entry()
    if head is None:
        first = next(iter(store.audit_records(batch=1)), None)
        if first is None:
            return ChainReport(0, True)
        return ChainReport(
            0, False, first.seq, "records exist but the chain's head is missing: removed", first
        )
    head_seq, head_hash = head
    walked = takewhile(lambda r: (r.seq or 0) <= head_seq, store.audit_records(batch=batch))
    report = verify_chain(walked, head_seq, head_hash)
    if not report.ok:
        return report
    beyond = next(iter(store.audit_records(after_seq=head_seq, batch=1)), None)
    if beyond is not None:
        now_head = store.audit_head_entry()
        if now_head is None or (beyond.seq or 0) > now_head[0]:
            problem = f"record {beyond.seq} lies beyond the chain's head: added outside the broker"
            return ChainReport(report.records, False, beyond.seq, problem, beyond)
    return report
