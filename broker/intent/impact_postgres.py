"""Measuring impact in PostgreSQL: the planner's row estimate of the tables to be emptied.

``pg_class.reltuples`` is what ANALYZE (and autovacuum) last counted: free to read, never a
scan of the table, and readable by any login, the read tier's included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from broker.intent.impact import Impact, ImpactKind, ImpactTarget

_ESTIMATE = """
SELECT c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
  AND (%(table)s::text IS NULL OR c.relname = %(table)s)
"""


class PostgresImpactProbe:
    """An :class:`~broker.intent.impact.ImpactProbe` for ``schema.table`` (or ``schema.*``)."""

    kinds: frozenset[ImpactKind] = frozenset({"table_rows"})

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect

    def measure(self, target: ImpactTarget, deadline: float) -> Impact:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            return Impact(target, False, reason="no time left to measure")
        schema, table = target.subject.split(".", 1)
        with self._connect() as connection:
            connection.execute(
                "SELECT set_config('statement_timeout', %s, false)", (str(remaining_ms),)
            )
            rows = connection.execute(
                _ESTIMATE, {"schema": schema, "table": None if table == "*" else table}
            ).fetchall()
        if not rows:
            return Impact(target, False, reason=f"no table {target.subject}")
        if any(estimate < 0 for estimate, _ in rows):
            return Impact(target, False, reason="never analyzed: PostgreSQL has no estimate yet")
        return Impact(
            target,
            True,
            sum(int(estimate) for estimate, _ in rows),
            sum(int(size) for _, size in rows),
            "PostgreSQL's estimate from its last ANALYZE",
        )
