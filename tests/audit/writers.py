"""The body of one broker process in the concurrent-writers test (importable by spawn)."""

from __future__ import annotations

import threading
import traceback
from typing import Any

from broker.audit.recorder import AuditRecorder, AuditStream
from broker.store.sql import SqlStore


def write_records(
    url: str, process: int, threads: int, per_thread: int, stream: str, start: Any
) -> None:
    """Append ``threads * per_thread`` records from ``threads`` threads; exit 1 on any error."""
    store = SqlStore.from_url(url, migrate=False)
    audit_stream = AuditStream(stream)
    store.subscribe_audit(audit_stream)
    recorder = AuditRecorder(store, correlation=lambda: None)
    errors: list[str] = []
    ready = threading.Barrier(threads)

    def writer(thread: int) -> None:
        try:
            ready.wait()
            for i in range(per_thread):
                recorder.record(
                    "issue",
                    "issued",
                    f"agent:writer-{process}-{thread}",
                    service="payments",
                    tier="read",
                    marker=f"p{process}-t{thread}-{i}",
                )
        except Exception:  # noqa: BLE001 - reported through the exit code
            errors.append(traceback.format_exc())

    start.wait()  # both processes start writing together
    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    audit_stream.close()
    store.close()
    if errors:
        print(errors[0])
        raise SystemExit(1)
