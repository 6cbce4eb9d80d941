"""Editing, deleting or reordering one record in the database is found, and named.

Each case tampers with the store directly (SQL on the audit table), as an intruder with
database access would, on SQLite and on PostgreSQL, then runs verify: the library walk in
small batches (so the walk crosses batch boundaries) and the `broker audit verify` command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from broker.audit.chain import GENESIS, record_hash
from broker.audit.verify import verify_store
from broker.store.sql import SqlStore
from tests.audit.helpers import fill, write_config
from tests.fixtures.cli import run_cli

RECORDS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        (tmp_path / "state").mkdir()
        url = f"sqlite:///{tmp_path / 'state' / 'broker.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = SqlStore.from_url(url)
    fill(made, RECORDS)
    yield made
    made.close()


def sql(store: SqlStore, *statements: str) -> None:
    with store.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def cli_verify(store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    url = None if store.engine.dialect.name == "sqlite" else store.engine.url
    config = write_config(tmp_path, url.render_as_string(hide_password=False) if url else None)
    result = run_cli(capsys, "audit", "verify", "--config", str(config), "--batch", "3")
    assert result.code == 1
    return result.out


def test_an_untouched_chain_verifies(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify_store(store, batch=3)
    assert report.ok and report.records == RECORDS
    url = None if store.engine.dialect.name == "sqlite" else store.engine.url
    config = write_config(tmp_path, url.render_as_string(hide_password=False) if url else None)
    result = run_cli(capsys, "audit", "verify", "--config", str(config), "--batch", "3")
    assert result.code == 0
    assert result.out == f"OK: {RECORDS} audit record(s); the hash chain is intact.\n"


EDIT_ACTOR = "UPDATE audit_log SET actor = 'approver:mallory' WHERE seq = 5"
EDIT_DETAILS = """UPDATE audit_log SET details = '{"access_key_id":"ASIAOTHER"}' WHERE seq = 5"""
EDIT_TIME = "UPDATE audit_log SET at = at + 3600 WHERE seq = 5"


@pytest.mark.parametrize("statement", [EDIT_ACTOR, EDIT_DETAILS, EDIT_TIME])
def test_an_edited_record_is_named(
    store: SqlStore, statement: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(store, statement)
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == 5
    assert report.problem == "record 5 was edited: its content no longer matches its hash"
    out = cli_verify(store, tmp_path, capsys)
    assert out.startswith("TAMPERED: record 5 was edited")
    assert "  record 5: " in out and "(request req_00000000000000000000000004)" in out


def test_a_removed_record_is_named(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(store, "DELETE FROM audit_log WHERE seq = 4")
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == 4
    assert report.problem == "record 4 is missing (the next record is 5): removed"
    assert cli_verify(store, tmp_path, capsys).startswith("TAMPERED: record 4 is missing")


def test_a_removed_and_renumbered_record_is_named(store: SqlStore) -> None:
    statements = ["DELETE FROM audit_log WHERE seq = 4"]
    statements += [f"UPDATE audit_log SET seq = {n - 1} WHERE seq = {n}" for n in range(5, 9)]
    statements.append(f"UPDATE audit_head SET seq = {RECORDS - 1}")
    sql(store, *statements)
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == 4
    assert report.problem.startswith("record 4 does not follow record 3")


def test_removing_the_last_records_is_found(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(store, "DELETE FROM audit_log WHERE seq >= 7")
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == 7
    assert report.problem == (
        "the chain ends at record 6 but its head says 8: records from 7 on were removed"
    )
    assert "records from 7 on were removed" in cli_verify(store, tmp_path, capsys)


def test_reordered_records_are_named(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(
        store,
        "UPDATE audit_log SET seq = -4 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = -4",
    )
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == 4
    assert report.problem.startswith("record 4 does not follow record 3: records were reordered")
    assert report.record is not None and report.record.actor == "agent:bot-4"
    assert cli_verify(store, tmp_path, capsys).startswith("TAMPERED: record 4 does not follow")


def rehash(store: SqlStore, seq: int, change: Callable[[str], str]) -> None:
    """Edit a record's actor and recompute its own hash, as a careful intruder would."""
    [record] = [r for r in store.audit_records() if r.seq == seq]
    edited = replace(record, actor=change(record.actor))
    assert edited.prev_hash is not None
    digest = record_hash(edited, seq, edited.prev_hash)
    sql(
        store,
        f"UPDATE audit_log SET actor = '{edited.actor}', hash = '{digest}' WHERE seq = {seq}",
    )


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(store: SqlStore) -> None:
    rehash(store, 5, lambda actor: "agent:innocent")
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == 6
    assert report.problem.startswith("record 6 does not follow record 5")


def test_rewriting_the_last_record_is_caught_by_the_head(store: SqlStore) -> None:
    rehash(store, RECORDS, lambda actor: "agent:innocent")
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == RECORDS
    assert report.problem == f"record {RECORDS} is not the one the head names: it was replaced"


def test_a_removed_head_is_found(store: SqlStore) -> None:
    sql(store, "DELETE FROM audit_head")
    report = verify_store(store)
    assert not report.ok and report.first_bad_seq == 1
    assert report.problem == "records exist but the chain's head is missing: removed"


def test_a_record_added_beyond_the_head_is_found(store: SqlStore) -> None:
    sql(
        store,
        "INSERT INTO audit_log (seq, at, actor, action, outcome, reason, details, prev_hash, hash)"
        " SELECT seq + 1, at, actor, action, outcome, reason, details, hash, hash"
        f" FROM audit_log WHERE seq = {RECORDS}",
    )
    report = verify_store(store, batch=3)
    assert not report.ok and report.first_bad_seq == RECORDS + 1
    assert "lies beyond the chain's head" in report.problem


def test_an_empty_store_verifies(tmp_path: Path) -> None:
    empty = SqlStore.from_url(f"sqlite:///{tmp_path / 'empty.db'}")
    report = verify_store(empty)
    assert report.ok and report.records == 0
    empty.close()


def test_verify_never_creates_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    result = run_cli(capsys, "audit", "verify", "--config", str(config))
    assert result.code == 1
    assert result.err == f"error: no broker store at {tmp_path / 'state' / 'broker.db'}\n"
    assert not (tmp_path / "state").exists()


def test_the_store_password_is_never_printed(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "pw-do-not-print-7319"
    url = postgres_url.replace("postgres@", f"postgres:{password}@").replace(":5432/", ":1/")
    config = write_config(tmp_path, url)
    result = run_cli(capsys, "audit", "verify", "--config", str(config))
    assert result.code == 1
    assert result.err.startswith("error: the broker's store is unavailable")
    assert password not in result.out + result.err


def rewrite_from(store: SqlStore, first: int) -> None:
    """Rewrite record ``first`` and recompute every later hash and the head: undetectable
    by the chain alone."""
    records = list(store.audit_records())
    previous = records[first - 2].hash if first > 1 else GENESIS
    assert previous is not None
    statements = []
    for record in records[first - 1 :]:
        assert record.seq is not None
        edited = replace(record, actor="agent:innocent" if record.seq == first else record.actor)
        digest = record_hash(edited, record.seq, previous)
        statements.append(
            f"UPDATE audit_log SET actor = '{edited.actor}', prev_hash = '{previous}', "
            f"hash = '{digest}' WHERE seq = {record.seq}"
        )
        previous = digest
    statements.append(f"UPDATE audit_head SET hash = '{previous}'")
    sql(store, *statements)


def export_copy(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path]:
    url = None if store.engine.dialect.name == "sqlite" else store.engine.url
    config = write_config(tmp_path, url.render_as_string(hide_password=False) if url else None)
    copy = tmp_path / "siem-copy.jsonl"
    assert (
        run_cli(capsys, "audit", "export", "--config", str(config), "--output", str(copy)).code == 0
    )
    return config, copy


def test_a_chain_rewritten_whole_is_caught_only_by_a_copy(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, copy = export_copy(store, tmp_path, capsys)
    untouched = run_cli(capsys, "audit", "verify", "--config", str(config), "--against", str(copy))
    assert untouched.code == 0
    assert untouched.out.splitlines()[1] == f"OK: {RECORDS} record(s) match the copy in {copy}."
    rewrite_from(store, 3)
    assert verify_store(store, batch=3).ok  # the limit of a hash chain: docs/audit.md
    result = run_cli(
        capsys, "audit", "verify", "--config", str(config), "--against", str(copy), "--batch", "3"
    )
    assert result.code == 1
    assert result.out.startswith("TAMPERED: record 3 differs from the copy (hash ")
    assert "the store was rewritten" in result.out
    assert f"  2 record(s) matched {copy} before that." in result.out


def test_records_removed_with_the_head_are_caught_by_a_copy(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, copy = export_copy(store, tmp_path, capsys)
    [sixth] = [r for r in store.audit_records() if r.seq == 6]
    sql(
        store,
        "DELETE FROM audit_log WHERE seq >= 7",
        f"UPDATE audit_head SET seq = 6, hash = '{sixth.hash}'",
    )
    assert verify_store(store).ok
    result = run_cli(capsys, "audit", "verify", "--config", str(config), "--against", str(copy))
    assert result.code == 1
    assert result.out.startswith("TAMPERED: record 7 is in the copy but not in the store")


def test_a_copy_that_is_not_audit_records_is_refused(
    store: SqlStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, copy = export_copy(store, tmp_path, capsys)
    copy.write_text(copy.read_text() + "\n" + '{"seq": "nine"}\n')
    result = run_cli(capsys, "audit", "verify", "--config", str(config), "--against", str(copy))
    assert result.code == 1
    assert result.err == (
        f"error: {copy.name}:{RECORDS + 2}: not an audit record (JSON with seq and hash)\n"
    )
