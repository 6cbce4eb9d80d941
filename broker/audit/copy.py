"""Compare the store with a copy kept elsewhere (a stream file, an export in a SIEM).

The hash chain cannot catch someone who rewrites the whole chain in the database; a copy
beyond their reach can. Each line of the copy names a record's ``seq`` and ``hash``; the
record with that ``seq`` in the store must still have that hash. Lines are read in batches
(memory stays bounded); a stream written by several processes may be out of order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from itertools import islice, takewhile

from broker.audit.chain import ChainReport
from broker.errors import BadRequest
from broker.store.base import AuditStore
from broker.store.records import AuditRecord


def copy_entries(lines: Iterable[str], name: str) -> Iterator[tuple[int, str]]:
    """(seq, hash) of every line; BadRequest naming the line when one is not a record."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            seq, digest = entry["seq"], entry["hash"]
        except (ValueError, TypeError, KeyError):
            raise BadRequest(
                f"{name}:{number}: not an audit record (JSON with seq and hash)"
            ) from None
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(digest, str):
            raise BadRequest(f"{name}:{number}: not an audit record (JSON with seq and hash)")
        yield seq, digest


def _stored(store: AuditStore, low: int, high: int) -> dict[int, AuditRecord]:
    records = store.audit_records(after_seq=low - 1, batch=min(1000, high - low + 1))
    return {r.seq: r for r in takewhile(lambda r: (r.seq or 0) <= high, records) if r.seq}


def compare_with_copy(
    store: AuditStore, entries: Iterable[tuple[int, str]], batch: int = 1000
) -> ChainReport:
    """Name the first record (in ``seq`` order within each batch) the store no longer holds;
    ``records``: how many matched before it."""
    compared = 0
    iterator = iter(entries)
    while chunk := sorted(islice(iterator, batch)):
        stored = _stored(store, chunk[0][0], chunk[-1][0])
        for seq, digest in chunk:
            record = stored.get(seq)
            if record is None:
                problem = f"record {seq} is in the copy but not in the store: removed"
                return ChainReport(compared, False, seq, problem)
            if record.hash != digest:
                problem = (
                    f"record {seq} differs from the copy (hash {digest[:12]}… there, "
                    f"{(record.hash or '')[:12]}… here): the store was rewritten"
                )
                return ChainReport(compared, False, seq, problem)
            compared += 1
    return ChainReport(compared, True)
