"""The store behaves the same on SQLite (embedded default) and PostgreSQL (replicas)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from broker.store.records import (
    ApprovalRecord,
    AuditRecord,
    FreezeRecord,
    IssuedRecord,
    RequestRecord,
)
from broker.store.sql import SqlStore
from broker.store.tables import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'broker.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture()
def store(store_url: str) -> Iterator[SqlStore]:
    made = SqlStore.from_url(store_url)
    yield made
    made.close()


def minting(request_id: str) -> IssuedRecord:
    """A write-ahead: a Vault token about to be minted, issued at 100, ending by 200."""
    return IssuedRecord(
        request_id=request_id,
        agent_key="k",
        agent_subject="agent:x",
        service="payments",
        environment="prod",
        region=None,
        tier="read",
        backend="vault",
        issued_at=100.0,
        expires_at=200.0,
        state="minting",
    )


def request_record(request_id: str = "req_" + "a" * 26, status: str = "pending") -> RequestRecord:
    return RequestRecord(
        id=request_id,
        agent_key="local:agent:x:abc",
        agent_subject="agent:x",
        agent_issuer="local",
        agent_claims={"iss": "broker-local"},
        service="payments",
        environment="prod",
        region="us-east-1",
        tier="write",
        backend="aws",
        resources=("arn:aws:s3:::b/k",),
        duration_seconds=1800,
        justification="fix it",
        status=status,
        created_at=1000.0,
        expires_at=2800.0,  # type: ignore[arg-type]
        approvals_required=2,
        delay_seconds=600,
    )


def test_the_schema_matches_the_tables_after_migrations(store: SqlStore) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_requests_round_trip_and_survive_a_restart(store_url: str) -> None:
    first = SqlStore.from_url(store_url)
    first.create_request(request_record())
    first.close()
    second = SqlStore.from_url(store_url)  # migrations run again: nothing to do
    loaded = second.get_request("req_" + "a" * 26)
    second.close()
    assert loaded == request_record()


def test_transitions_are_compare_and_set(store: SqlStore) -> None:
    store.create_request(request_record())
    moved = store.transition("req_" + "a" * 26, ["pending"], status="denied", decided_at=5.0)
    assert moved is not None and moved.status == "denied"
    assert store.transition("req_" + "a" * 26, ["pending"], status="approved") is None


def test_decisions_count_distinct_approvers_once(store: SqlStore) -> None:
    store.create_request(request_record())

    def approve_at_two(
        request: RequestRecord, approvers: tuple[str, ...], counted: bool
    ) -> dict[str, object]:
        return {"status": "approved", "approved_at": 10.0} if len(approvers) >= 2 else {}

    def decide(approver: str) -> int:
        result = store.record_decision(
            "req_" + "a" * 26,
            ApprovalRecord("req_" + "a" * 26, approver, "approve", "link", 5.0),
            approve_at_two,
        )
        return result.approvals

    assert decide("alice") == 1
    assert decide("alice") == 1  # a double click counts once
    assert decide("bob") == 2
    stored = store.get_request("req_" + "a" * 26)
    assert stored is not None and stored.status == "approved"
    assert [a.approver for a in store.approvals_for("req_" + "a" * 26)] == ["alice", "bob"]


def test_single_use_tokens(store: SqlStore) -> None:
    assert store.use_token("jti-1", "req_x", 100.0, 1.0) is True
    assert store.use_token("jti-1", "req_x", 100.0, 2.0) is False
    assert store.token_used("jti-1") and not store.token_used("jti-2")


def test_issued_records_and_revocation(store: SqlStore) -> None:
    record = IssuedRecord(
        request_id="req_1",
        agent_key="k",
        agent_subject="agent:x",
        service="payments",
        environment="prod",
        region="us-east-1",
        tier="read",
        backend="aws",
        issued_at=10.0,
        expires_at=100.0,
        access_key_id="ASIAEXAMPLE",
        source_identity="agent-x",
    )
    stored = store.record_issued(record)
    assert stored.id is not None
    assert [r.access_key_id for r in store.active_issued(50.0, agent_subject="agent:x")] == [
        "ASIAEXAMPLE"
    ]
    assert store.active_issued(150.0) == []  # expired
    store.mark_revoked([stored.id], 60.0)
    assert store.active_issued(70.0) == []


def test_freezes(store: SqlStore) -> None:
    store.add_freeze(FreezeRecord("agent", "agent:x", "rogue", "ops", 1.0))
    store.add_freeze(FreezeRecord("scope", "payments/prod", "incident", "ops", 2.0))
    assert [f.target for f in store.active_freezes()] == ["agent:x", "payments/prod"]
    assert store.lift_freezes("agent", "agent:x", 3.0) == 1
    assert [f.target for f in store.active_freezes()] == ["payments/prod"]


def test_counters_enforce_a_sliding_window(store: SqlStore) -> None:
    results = [store.count_and_add("rate:x", 60, 2, now) for now in (0.0, 1.0, 2.0)]
    assert [added for added, _, _ in results] == [True, True, False]
    assert results[2][2] == 0.0  # the oldest event, for Retry-After
    assert store.count_and_add("rate:x", 60, 2, 61.0)[0] is True  # the first slid out


def test_audit_chain_appends_in_order(store: SqlStore) -> None:
    for i in range(3):
        store.append_audit(
            AuditRecord(at=float(i), actor="a", action="issue", outcome="ok", request_id=f"req_{i}")
        )
    records = list(store.audit_records())
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[1].prev_hash == records[0].hash and records[2].prev_hash == records[1].hash
    assert store.audit_head() == 3


def test_many_records_append_in_order_beside_other_writers(store: SqlStore) -> None:
    """A batch (the kill switch's per-credential records) shares transactions, keeps its
    order, and interleaves with other writers without breaking the chain."""

    def record(actor: str, i: int) -> AuditRecord:
        return AuditRecord(at=float(i), actor=actor, action="revoke", outcome="revoked")

    def others() -> None:
        for i in range(40):
            store.append_audit(record("other", i))

    writer = threading.Thread(target=others)
    writer.start()
    stored = store.append_audits([record("batch", i) for i in range(600)])
    writer.join()
    assert [r.at for r in stored] == [float(i) for i in range(600)]
    assert [r.seq for r in stored] == sorted(r.seq for r in stored)
    chain = list(store.audit_records())
    assert [r.seq for r in chain] == list(range(1, 641))
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:], strict=False))
    assert [r.at for r in chain if r.actor == "batch"] == [float(i) for i in range(600)]
    assert store.append_audits([]) == []


def test_restart_keeps_a_pending_request_with_its_approvals(store_url: str) -> None:
    first = SqlStore.from_url(store_url)
    first.create_request(request_record())
    first.record_decision(
        "req_" + "a" * 26,
        ApprovalRecord("req_" + "a" * 26, "alice", "approve", "link", 5.0),
        lambda *_: {},
    )
    first.close()
    second = SqlStore.from_url(store_url)
    assert [a.approver for a in second.approvals_for("req_" + "a" * 26)] == ["alice"]
    assert replace(request_record()) == second.get_request("req_" + "a" * 26)
    second.close()


def test_a_lift_from_a_later_time_keeps_the_freeze_until_then(store: SqlStore) -> None:
    store.add_freeze(FreezeRecord("agent", "agent:x", "incident", "ops", 1.0))
    assert store.lift_freezes("agent", "agent:x", 20.0) == 1
    assert [f.target for f in store.active_freezes(10.0)] == ["agent:x"]
    assert store.active_freezes(20.0) == [] and store.active_freezes(30.0) == []


def test_a_named_lock_is_held_by_one_replica_at_a_time(store_url: str) -> None:
    """Two stores on one database (two replicas) take the same named lock in turn; other
    names do not wait."""
    first, second = SqlStore.from_url(store_url), SqlStore.from_url(store_url)
    inside: list[str] = []
    overlaps: list[bool] = []

    def hold(store: SqlStore, who: str) -> None:
        with store.exclusive("revocation-policy:role-a"):
            inside.append(who)
            overlaps.append(len(inside) > 1)
            time.sleep(0.2)
            inside.remove(who)

    try:
        threads = [
            threading.Thread(target=hold, args=(store, name))
            for store, name in ((first, "one"), (second, "two"))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert overlaps == [False, False]
        # The lock is released: it can be taken again at once.
        with first.exclusive("revocation-policy:role-a"):
            pass
    finally:
        first.close()
        second.close()


def test_locks_of_different_names_are_held_at_the_same_time(store_url: str) -> None:
    """Two roles' revocation policies are written at once, by two replicas or two threads."""
    first, second = SqlStore.from_url(store_url), SqlStore.from_url(store_url)
    holding_a, release_a, got_b = threading.Event(), threading.Event(), threading.Event()

    def hold_a() -> None:
        with first.exclusive("revocation-policy:role-a"):
            holding_a.set()
            release_a.wait(30)

    def take(store: SqlStore) -> None:
        with store.exclusive("revocation-policy:role-b"):
            got_b.set()

    holder = threading.Thread(target=hold_a)
    try:
        holder.start()
        assert holding_a.wait(10)
        for store in (second, first):  # another replica, and another thread of this one
            got_b.clear()
            taker = threading.Thread(target=take, args=(store,))
            taker.start()
            assert got_b.wait(10), "role-b waited for role-a"
            taker.join(10)
    finally:
        release_a.set()
        holder.join(10)
        first.close()
        second.close()


def test_a_failed_audit_write_stores_neither_record_and_is_a_store_error(tmp_path: Path) -> None:
    """The issuance record and its audit record commit together or not at all, and the
    driver's error reaches the caller as the broker's own (no driver message)."""
    import sqlite3

    from broker.errors import StoreUnavailable

    path = tmp_path / "broker.db"
    store = SqlStore.from_url(f"sqlite:///{path}")
    try:
        refuse = sqlite3.connect(path)
        refuse.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        refuse.commit()
        refuse.close()
        issued = replace(
            minting("req_x"), issued_at=1.0, expires_at=9e9, vault_accessor="acc", state="active"
        )
        audit = AuditRecord(at=1.0, actor="agent:x", action="issue", outcome="issued")
        with pytest.raises(StoreUnavailable) as raised:
            store.record_issued(issued, audit)
        assert "disk says no" not in str(raised.value)
        assert store.active_issued(2.0) == []
        assert store.audit_head() == 0
    finally:
        store.close()


def test_a_state_change_and_its_audit_record_commit_together(store: SqlStore) -> None:
    """An audit record that cannot be written takes the change with it, and the reverse."""
    store.create_request(request_record())
    request_id = "req_" + "a" * 26
    unwritable = AuditRecord(
        at=1.0, actor="broker", action="request", outcome="cancelled", details={"x": object()}
    )
    with pytest.raises(TypeError):
        store.transition(request_id, ["pending"], audit=unwritable, status="cancelled")
    assert store.get_request(request_id).status == "pending"  # type: ignore[union-attr]
    assert list(store.audit_records(request_id=request_id)) == []
    good = AuditRecord(
        at=2.0, actor="broker", action="request", outcome="cancelled", request_id=request_id
    )
    assert store.transition(request_id, ["pending"], audit=good, status="cancelled") is not None
    assert [r.outcome for r in store.audit_records(request_id=request_id)] == ["cancelled"]
    # A compare-and-set that does not apply audits nothing.
    assert store.transition(request_id, ["pending"], audit=good, status="expired") is None
    assert len(list(store.audit_records(request_id=request_id))) == 1


def test_a_completion_whose_write_ahead_was_lost_still_leaves_a_record(store: SqlStore) -> None:
    """The write-ahead commits without waiting for the disk: a database crash may lose it
    while the upstream minted. The completion then records the credential anew, so the
    kill switch still lists what is handed out."""
    from sqlalchemy import delete

    from broker.store import tables as t

    intent = store.begin_issue(minting("req_" + "d" * 26))
    with store.db.tx() as connection:
        connection.execute(delete(t.issued).where(t.issued.c.id == intent.id))
    done = store.complete_issue(
        replace(intent, vault_accessor="acc", expires_at=190.0, state="active"),
        AuditRecord(at=130.0, actor="agent:x", action="issue", outcome="issued"),
    )
    assert done.record.id is not None and done.record.revoked_at is None
    [listed] = store.active_issued(150.0)
    assert (listed.id, listed.vault_accessor, listed.state) == (done.record.id, "acc", "active")


def test_a_write_ahead_is_completed_or_found_stale(store: SqlStore) -> None:
    intent = store.begin_issue(minting("req_" + "c" * 26))
    assert intent.id is not None
    assert [r.id for r in store.stale_intents(101.0)] == [intent.id]
    assert [r.id for r in store.active_issued(150.0)] == [intent.id]  # the kill switch sees it
    store.add_freeze(FreezeRecord("agent", "agent:x", "rogue", "ops", 120.0))
    done = store.complete_issue(
        replace(intent, vault_accessor="acc", expires_at=190.0, state="active"),
        AuditRecord(at=130.0, actor="agent:x", action="issue", outcome="issued"),
    )
    assert done.record.state == "active" and done.record.vault_accessor == "acc"
    assert [f.target for f in done.freezes] == ["agent:x"]  # read in the same transaction
    assert store.stale_intents(1000.0) == []
