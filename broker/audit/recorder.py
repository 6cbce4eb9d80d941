"""Write every decision of the broker to the hash-chained audit log.

Records carry ids that correlate them with upstream logs (STS access key id and
SourceIdentity, Vault token accessor, lease id) and with the broker's own log lines (the
HTTP request id), and never a secret: callers pass only public fields, and ``details`` are
checked against secret-looking names at any depth (:mod:`broker.audit.redact`).

What is hashed is exactly what is stored: details are normalised to plain JSON first and
the indexed text fields are clipped to their column widths (PostgreSQL refuses longer
values; a bad request must still be audited, not turned into a store error).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from broker.audit.redact import JSON_SCALARS, secret_fields
from broker.store import tables as t
from broker.store.base import AuditStore
from broker.store.records import AuditRecord, IssuedRecord, RequestRecord

log = logging.getLogger(__name__)

# The widths of the audit log's bounded text columns (the migration's, read from the table).
COLUMN_LIMITS: dict[str, int] = {
    name: int(getattr(t.audit_log.c[name].type, "length", 0) or 0)
    for name in ("actor", "action", "outcome", "service", "environment", "tier", "request_id")
}
MAX_UNCLIPPED = 2000


def http_request_id() -> str | None:
    """The X-Request-ID of the HTTP request being served, to join audit records and logs.
    A process that never imported Flask (`broker revoke`) serves none: it is not imported
    for this (a tenth of the command's start-up)."""
    flask = sys.modules.get("flask")
    if flask is not None and flask.has_request_context():
        value = flask.g.get("request_id")
        return value if isinstance(value, str) else None
    return None


def correlation_of(record: IssuedRecord) -> dict[str, str]:
    """The public correlation ids of an issued credential (for revocation records), and the
    hash of the grant it was issued under."""
    ids = {
        "access_key_id": record.access_key_id,
        "source_identity": record.source_identity,
        "role_arn": record.role_arn,
        "accessor": record.vault_accessor,
        "lease_id": record.lease_id,
        "username": record.username,
        "grant_sha256": record.grant_sha256,
    }
    return {k: v for k, v in ids.items() if v}


def _clip(value: str | None, limit: int) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "\u2026"


class _NotPlain(Exception):
    """A value JSON would change (a type of its own, a key not text): encoded and decoded."""


def _plain(value: Any) -> Any:
    """``value`` as JSON returns it, for the plain values nearly every record carries."""
    kind = type(value)
    if kind in JSON_SCALARS:
        return value
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is dict and all(type(key) is str for key in value):
        return {key: _plain(value[key]) for key in sorted(value)}
    raise _NotPlain


def plain_json(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` as the store will return them (tuples become lists, odd types text)."""
    try:
        plain: dict[str, Any] = _plain(dict(details))
        return plain
    except _NotPlain:
        pass
    result: dict[str, Any] = json.loads(json.dumps(dict(details), sort_keys=True, default=str))
    return result


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class AuditRecorder:
    store: AuditStore
    clock: Callable[[], float] = time.time
    correlation: Callable[[], str | None] = http_request_id

    def record(self, action: str, outcome: str, actor: str, **fields: Any) -> AuditRecord:
        """Append one record (fields as :meth:`build` takes them); raise ValueError if the
        details name a secret field."""
        return self.store.append_audit(self.build(action, outcome, actor, **fields))

    def build(
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
        """The record :meth:`record` would append, for a caller that stores it in its own
        transaction (an issuance and its audit record commit together)."""
        leaked = secret_fields(details)
        if leaked:
            raise ValueError(f"refusing to audit secret fields: {sorted(leaked)}")
        kept = {k: v for k, v in details.items() if v is not None}
        http_id = self.correlation()
        if http_id and "http_request_id" not in kept:
            kept["http_request_id"] = http_id
        fields = {
            "actor": actor,
            "action": action,
            "outcome": outcome,
            "service": service,
            "environment": environment,
            "tier": tier,
            "request_id": request_id,
        }
        clipped = {name: _clip(value, COLUMN_LIMITS[name]) for name, value in fields.items()}
        unclipped = {
            name: value[:MAX_UNCLIPPED]
            for name, value in fields.items()
            if value is not None and value != clipped[name]
        }
        if unclipped:
            kept["unclipped"] = unclipped
        record = AuditRecord(
            at=float(self.clock()),
            actor=clipped["actor"] or "",
            action=clipped["action"] or "",
            outcome=clipped["outcome"] or "",
            reason=reason,
            service=clipped["service"],
            environment=clipped["environment"],
            tier=clipped["tier"],
            request_id=clipped["request_id"],
            details=plain_json(kept),
        )
        return record

    def credential_event(
        self, action: str, outcome: str, actor: str, issued: IssuedRecord, **fields: Any
    ) -> AuditRecord:
        """A record about one issued credential (revocation...), with its correlation ids."""
        return self.store.append_audit(
            self.build_credential_event(action, outcome, actor, issued, **fields)
        )

    def build_credential_event(
        self, action: str, outcome: str, actor: str, issued: IssuedRecord, **fields: Any
    ) -> AuditRecord:
        """The record :meth:`credential_event` would append (for :meth:`append_all`)."""
        named = _named(issued.service, issued.environment, issued.tier, issued.request_id)
        ids = {"backend": issued.backend, "agent": issued.agent_subject, **correlation_of(issued)}
        return self.build(action, outcome, actor, **named, **{**ids, **fields})

    def append_all(self, records: Sequence[AuditRecord]) -> list[AuditRecord]:
        """Append records built by :meth:`build`, in order, sharing transactions."""
        return self.store.append_audits(records)

    def request_event(
        self, action: str, outcome: str, actor: str, request: RequestRecord, **fields: Any
    ) -> AuditRecord:
        """A record about one escalated request, named by its id, service, environment, tier
        (and the hashes of its grant and intent: what every decision on it is about)."""
        record = self.build_request_event(action, outcome, actor, request, **fields)
        return self.store.append_audit(record)

    def build_request_event(
        self, action: str, outcome: str, actor: str, request: RequestRecord, **fields: Any
    ) -> AuditRecord:
        """The record :meth:`request_event` would append, for a caller whose store
        transaction commits it with the change it records."""
        named: dict[str, Any] = _named(
            request.service, request.environment, request.tier, request.id
        )
        if request.grant_sha256:
            named["grant_sha256"] = request.grant_sha256
        if request.intent_sha256:
            named["intent_sha256"] = request.intent_sha256
        return self.build(action, outcome, actor, **{**named, **fields})


def _named(service: str, environment: str, tier: str, request_id: str) -> dict[str, str]:
    return {"service": service, "environment": environment, "tier": tier, "request_id": request_id}


def iso_time(at: float) -> str:
    """UTC, millisecond precision: 2024-05-01T12:00:00.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def record_json(record: AuditRecord) -> dict[str, Any]:
    """The JSON form of a record (export, streaming, `audit show`): every field, and the
    time in words."""
    data = {f.name: getattr(record, f.name) for f in fields(record)}
    return {**data, "time": iso_time(record.at), "details": dict(record.details)}


def record_line(record: AuditRecord) -> str:
    """One record as one JSON line (no trailing newline)."""
    return json.dumps(record_json(record), sort_keys=True, separators=(",", ":"))


class AuditStream:
    """Write each appended record as one JSON line to stdout or a file, as it happens.

    A file is opened for appending and each line is one ``write``, so several worker
    processes can share it without tearing lines. The stream is a copy for a SIEM: when it
    cannot be written, the record is still in the store (the source of truth, and the
    request goes on); the failure is logged and counted, never raised.
    """

    def __init__(self, target: str) -> None:
        self._lock = threading.Lock()
        self.target = target
        self.failures = 0
        self.closed = False
        self._fd: int | None = None
        if target != "-":
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def __call__(self, record: AuditRecord) -> None:
        line = record_line(record) + "\n"
        with self._lock:
            if self.closed:
                self.failures += 1
                return
            try:
                if self._fd is None:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    data = line.encode("utf-8")
                    while data:
                        data = data[os.write(self._fd, data) :]
            except (OSError, ValueError) as e:
                self.failures += 1
                log.warning(
                    "audit stream write failed; the record is in the store",
                    extra={"seq": record.seq, "error": type(e).__name__},
                )

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
