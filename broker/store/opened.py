"""The store a process opens from its settings: SQL at the configured URL, its audit
records also streamed (as JSON lines) when the settings name a stream."""

from __future__ import annotations

from broker.audit.recorder import AuditStream
from broker.config import Settings
from broker.store.sql import SqlStore


def open_store(settings: Settings) -> SqlStore:
    store = SqlStore.from_url(settings.database_url)
    if settings.audit_stream:
        store.subscribe_audit(AuditStream(settings.audit_stream))
    return store
