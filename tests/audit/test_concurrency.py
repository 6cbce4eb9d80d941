"""8 writers on two broker processes, one PostgreSQL database: the chain stays whole."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from broker.audit.verify import verify_store
from broker.store.sql import SqlStore
from tests.audit.writers import write_records

PROCESSES = 2
THREADS = 4
PER_THREAD = 40


def test_eight_writers_on_two_processes_keep_the_chain_valid_and_complete(
    postgres_url: str, tmp_path: Path
) -> None:
    store = SqlStore.from_url(postgres_url)  # migrated once; the chain has no head yet
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    streams = [tmp_path / f"stream-{p}.jsonl" for p in range(PROCESSES)]
    processes = [
        context.Process(
            target=write_records,
            args=(postgres_url, p, THREADS, PER_THREAD, str(streams[p]), start),
        )
        for p in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * PROCESSES

    total = PROCESSES * THREADS * PER_THREAD
    report = verify_store(store, batch=37)
    assert report.ok, report.problem
    assert report.records == total
    assert store.audit_head_entry() is not None
    assert store.audit_head_entry()[0] == total  # type: ignore[index]
    records = list(store.audit_records())
    assert [r.seq for r in records] == list(range(1, total + 1))
    markers = sorted(r.details["marker"] for r in records)
    expected = sorted(
        f"p{p}-t{t}-{i}"
        for p in range(PROCESSES)
        for t in range(THREADS)
        for i in range(PER_THREAD)
    )
    assert markers == expected  # complete: none lost, none doubled
    # Each process streamed exactly the records it wrote, with the hashes the store holds.
    by_seq = {r.seq: r.hash for r in records}
    for p, path in enumerate(streams):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == THREADS * PER_THREAD
        assert {line["details"]["marker"].split("-")[0] for line in lines} == {f"p{p}"}
        assert all(by_seq[line["seq"]] == line["hash"] for line in lines)
    store.close()
