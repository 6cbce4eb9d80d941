"""Opening a store migrates it once; a store already current opens without Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import insert

from broker.store import tables as t
from broker.store.engine import make_engine
from broker.store.migrate import alembic_config, current_revision, head_revision, upgrade
from broker.store.sql import SqlStore

ROOT = Path(__file__).resolve().parents[2]


def test_the_head_read_from_the_files_is_alembics() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert [head_revision()] == heads


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_new_database_is_migrated_to_the_head(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'new.db'}"
        if dialect == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    assert current_revision(make_engine(url)) is None
    store = SqlStore.from_url(url)
    try:
        assert current_revision(store.engine) == head_revision()
        assert store.audit_head() == 0
    finally:
        store.close()


def test_a_current_store_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'current.db'}"
    SqlStore.from_url(url).close()
    probe = (
        "import sys\n"
        "from broker.store.sql import SqlStore\n"
        f"SqlStore.from_url({url!r}).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_issued_rows_from_before_the_vault_policy_was_recorded_say_none(tmp_path: Path) -> None:
    """Their revocation falls back to deleting the request's own policy (tests/issuers)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0006_issued_grant")
    with engine.begin() as connection:
        connection.execute(
            insert(t.issued).values(
                request_id="req_old",
                agent_key="local:agent:ops:x",
                agent_subject="agent:ops",
                service="payments",
                environment="prod",
                tier="read",
                backend="vault",
                issued_at=1.0,
                expires_at=4e9,
                vault_accessor="acc-old",
            )
        )
    engine.dispose()
    store = SqlStore.from_url(url)
    try:
        [record] = store.active_issued(2.0)
        assert (record.vault_accessor, record.vault_policy) == ("acc-old", None)
    finally:
        store.close()
