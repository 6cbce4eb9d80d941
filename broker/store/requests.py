"""Escalated requests and the approvals recorded on them, in SQL.

A request changes state only by compare-and-set (:meth:`SqlRequests.transition`), and an
approval is counted with the request row locked (:meth:`SqlApprovals.record_decision`), so
replicas deciding at the same instant are serialized by the database. Each change commits
together with its audit record (the journal appends it inside the same transaction): a
crash keeps both or neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from sqlalchemy import Select, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from broker.store import tables as t
from broker.store.audit_log import Journal
from broker.store.changes import LocalChanges
from broker.store.engine import Database, as_json, where_equal
from broker.store.records import (
    ApprovalRecord,
    AuditRecord,
    DecisionResult,
    IssuedRecord,
    RequestRecord,
)

DecisionAudit = Callable[[DecisionResult], list[AuditRecord]]

_JSON_COLUMNS = ("notification", "impact")


class SqlRequests:
    """The requests table: create, read, and change state by compare-and-set."""

    changes: LocalChanges
    journal: Journal

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_request(self, record: RequestRecord, audit: AuditRecord | None = None) -> None:
        """Store a new request and (in the same transaction) its audit record."""
        with self.db.tx() as connection:
            connection.execute(insert(t.requests).values(**_request_row(record)))
            chained = self.journal.chain_in(connection, [audit] if audit else [])
        self.journal.announce(chained)

    def get_request(self, request_id: str) -> RequestRecord | None:
        rows = self._requests(select(t.requests).where(t.requests.c.id == request_id))
        return rows[0] if rows else None

    def list_requests(
        self,
        agent_key: str | None = None,
        agent_subject: str | None = None,
        service: str | None = None,
        environment: str | None = None,
        statuses: Sequence[str] = (),
        limit: int = 100,
    ) -> list[RequestRecord]:
        """Most recent first."""
        query = where_equal(
            select(t.requests).order_by(t.requests.c.created_at.desc()).limit(limit),
            t.requests,
            agent_key=agent_key,
            agent_subject=agent_subject,
            service=service,
            environment=environment,
        )
        if statuses:
            query = query.where(t.requests.c.status.in_(list(statuses)))
        return self._requests(query)

    def requests_due(self, now: float) -> list[RequestRecord]:
        """Pending requests past their expiry, approved ones past their collect window."""
        return self._requests(
            select(t.requests).where(
                or_(
                    and_(t.requests.c.status == "pending", t.requests.c.expires_at <= now),
                    and_(t.requests.c.status == "approved", t.requests.c.collect_deadline <= now),
                )
            )
        )

    def transition(
        self,
        request_id: str,
        from_statuses: Sequence[str],
        audit: AuditRecord | None = None,
        **changes: Any,
    ) -> RequestRecord | None:
        """Change a request only if its status is one of ``from_statuses`` (compare-and-set),
        with ``audit`` in the same transaction.

        Returns the updated request, or None when another replica changed it first (then
        nothing is audited).
        """
        return self.claim(request_id, from_statuses, changes, None, audit)[0]

    def claim(
        self,
        request_id: str,
        from_statuses: Sequence[str],
        changes: dict[str, Any],
        intent: IssuedRecord | None,
        audit: AuditRecord | None,
    ) -> tuple[RequestRecord | None, IssuedRecord | None]:
        """:meth:`transition`, and in the same transaction the write-ahead ``intent`` of the
        credential it leads to (collection: claimed and about to mint, or neither)."""
        values = {k: (as_json(v) if k in _JSON_COLUMNS else v) for k, v in changes.items()}
        stored_intent = None
        with self.db.tx() as connection:
            result = connection.execute(
                update(t.requests)
                .where(
                    and_(
                        t.requests.c.id == request_id, t.requests.c.status.in_(list(from_statuses))
                    )
                )
                .values(**values)
            )
            if result.rowcount != 1:
                return None, None
            row = (
                connection.execute(select(t.requests).where(t.requests.c.id == request_id))
                .mappings()
                .one()
            )
            if intent is not None:
                stored_intent = self.journal.insert_in(connection, intent)
            chained = self.journal.chain_in(connection, [audit] if audit else [])
            self.changes.publish(connection, request_id)
        self.journal.announce(chained)
        self.changes.changed(request_id)
        return request_from_row(row), stored_intent

    def change_mark(self, request_id: str) -> int:
        return self.changes.mark(request_id)

    def wait_for_change(self, request_id: str, mark: int, timeout: float) -> bool:
        return self.changes.wait(request_id, mark, timeout)

    def set_notification(self, request_id: str, notification: dict[str, Any]) -> None:
        with self.db.tx() as connection:
            connection.execute(
                update(t.requests)
                .where(t.requests.c.id == request_id)
                .values(notification=as_json(notification))
            )

    def set_impact(self, request_id: str, impact: dict[str, Any]) -> RequestRecord | None:
        with self.db.tx() as connection:
            connection.execute(
                update(t.requests)
                .where(t.requests.c.id == request_id)
                .values(impact=as_json(impact))
            )
        return self.get_request(request_id)

    def count_requests(self, status: str) -> int:
        """How many requests are in ``status`` now, across every replica (metrics)."""
        with self.db.tx() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(t.requests)
                    .where(t.requests.c.status == status)
                ).scalar_one()
            )

    def _requests(self, query: Select[Any]) -> list[RequestRecord]:
        with self.db.tx() as connection:
            rows = connection.execute(query).mappings().all()
        return [request_from_row(row) for row in rows]


class SqlApprovals:
    """Approvers' decisions, each counted against its request under the request's lock."""

    changes: LocalChanges
    journal: Journal

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_decision(
        self,
        request_id: str,
        approval: ApprovalRecord,
        decide: Callable[[RequestRecord, tuple[str, ...], bool], dict[str, Any]],
        audit: DecisionAudit | None = None,
    ) -> DecisionResult:
        """Record one approver's decision and let ``decide`` update the request, atomically.

        The request row is locked for the whole transaction, so two approvals arriving at
        once on two replicas are counted one after the other. ``decide(request, approvers,
        counted)`` (``approvers``: who has approved so far, this ballot included) returns the
        column changes (status, approved_at...) to apply; ``audit(result)`` the audit
        records, appended in the same transaction.
        """
        with self.db.tx() as connection:
            row = (
                connection.execute(
                    select(t.requests).where(t.requests.c.id == request_id).with_for_update()
                )
                .mappings()
                .first()
            )
            if row is None:
                raise KeyError(request_id)
            request = request_from_row(row)
            counted = True
            try:
                with connection.begin_nested():
                    connection.execute(insert(t.approvals).values(**asdict(approval)))
            except IntegrityError:
                counted = False  # this approver already decided: a double click
            approvers = tuple(
                connection.execute(
                    select(t.approvals.c.approver)
                    .where(
                        and_(
                            t.approvals.c.request_id == request_id,
                            t.approvals.c.decision == "approve",
                        )
                    )
                    .order_by(t.approvals.c.id)
                ).scalars()
            )
            approvals = len(approvers)
            changes = decide(request, approvers, counted)
            if changes:
                connection.execute(
                    update(t.requests).where(t.requests.c.id == request_id).values(**changes)
                )
                request = replace(request, **changes)
            result = DecisionResult(request=request, counted=counted, approvals=int(approvals))
            chained = self.journal.chain_in(connection, audit(result) if audit else [])
            if counted:
                self.changes.publish(connection, request_id)
        self.journal.announce(chained)
        if counted:
            self.changes.changed(request_id)
        return result

    def approvals_for(self, request_id: str) -> list[ApprovalRecord]:
        with self.db.tx() as connection:
            rows = (
                connection.execute(
                    select(t.approvals)
                    .where(t.approvals.c.request_id == request_id)
                    .order_by(t.approvals.c.created_at, t.approvals.c.id)
                )
                .mappings()
                .all()
            )
        return [
            ApprovalRecord(
                request_id=r["request_id"],
                approver=r["approver"],
                decision=r["decision"],
                via=r["via"],
                created_at=r["created_at"],
            )
            for r in rows
        ]


def _request_row(record: RequestRecord) -> dict[str, Any]:
    row = asdict(record)
    row["agent_claims"] = as_json(dict(record.agent_claims))
    row["resources"] = as_json(list(record.resources))
    row["notification"] = as_json(dict(record.notification))
    row["impact"] = as_json(dict(record.impact))
    return row


def request_from_row(row: Any) -> RequestRecord:
    data = dict(row)
    data["agent_claims"] = json.loads(data["agent_claims"])
    data["resources"] = tuple(json.loads(data["resources"]))
    data["notification"] = json.loads(data["notification"] or "{}")
    data["impact"] = json.loads(data["impact"] or "{}")
    data["break_glass"] = bool(data["break_glass"])
    return RequestRecord(**data)
