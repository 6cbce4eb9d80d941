"""Write every decision of the broker to the hash-chained audit log.

Records carry ids that correlate them with upstream logs (STS access key id and
SourceIdentity, Vault token accessor, lease id) and never a secret: callers pass only
public fields, and ``details`` are checked against the secret-looking keys below.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from broker.store.records import AuditRecord
from broker.store.sql import SqlStore

# Keys that must never appear in audit details; a programming error if they do.
FORBIDDEN_KEYS = frozenset({"secret_access_key", "session_token", "token", "password", "secret"})


class AuditRecorder:
    def __init__(self, store: SqlStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def record(
        self,
        action: str,
        outcome: str,
        actor: str,
        reason: str = "",
        service: str | None = None,
        environment: str | None = None,
        tier: str | None = None,
        request_id: str | None = None,
        **details: Any,
    ) -> AuditRecord:
        leaked = FORBIDDEN_KEYS.intersection(details)
        if leaked:
            raise ValueError(f"refusing to audit secret fields: {sorted(leaked)}")
        record = AuditRecord(
            at=self.clock(),
            actor=actor,
            action=action,
            outcome=outcome,
            reason=reason,
            service=service,
            environment=environment,
            tier=tier,
            request_id=request_id,
            details={k: v for k, v in details.items() if v is not None},
        )
        return self.store.append_audit(record)


def record_json(record: AuditRecord) -> dict[str, Any]:
    """The JSON form of a record (export, streaming, `audit show`)."""
    return {
        "seq": record.seq,
        "at": record.at,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.at)),
        "actor": record.actor,
        "action": record.action,
        "outcome": record.outcome,
        "reason": record.reason,
        "service": record.service,
        "environment": record.environment,
        "tier": record.tier,
        "request_id": record.request_id,
        "details": dict(record.details),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


class AuditStream:
    """Write each appended record as one JSON line to stdout or a file, as it happens."""

    def __init__(self, target: str) -> None:
        self._lock = threading.Lock()
        self._handle: IO[str]
        if target == "-":
            self._handle = sys.stdout
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("a", encoding="utf-8")

    def __call__(self, record: AuditRecord) -> None:
        line = json.dumps(record_json(record), sort_keys=True)
        with self._lock:
            self._handle.write(line + "\n")
            self._handle.flush()


def details_of(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(mapping or {})
