"""Opening a store migrates it once; a store already current opens without Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from broker.store.engine import make_engine
from broker.store.migrate import alembic_config, current_revision, head_revision
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
