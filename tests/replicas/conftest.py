"""Two `broker serve` replicas on one PostgreSQL database behind a round-robin proxy.

``replicas`` is shared by the tests of a module (starting two gunicorn masters with two
workers each takes several seconds); those tests use agents of their own, so none sees
another's requests, limits or freezes. ``own_replicas`` is a pair for one test alone,
for a test that kills one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.moto import Moto
from tests.fixtures.openbao import OpenBao
from tests.fixtures.postgres import ADMIN_URL, create_database, drop_database
from tests.fixtures.replicas import ReplicaSet, replica_set
from tests.fixtures.secret_scan import STATE_KEY, Watcher


def _store_url(database: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{database}"


@pytest.fixture(scope="module")
def replicas(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    moto: Moto,
    openbao: OpenBao,
) -> Iterator[ReplicaSet]:
    scan = Watcher(request.config.stash[STATE_KEY])  # the replicas' logs, scanned at the end
    database = create_database()
    try:
        with replica_set(
            tmp_path_factory.mktemp("replicas"), _store_url(database), moto, openbao, scan
        ) as made:
            yield made
    finally:
        scan.collect_files()
        drop_database(database)


@pytest.fixture()
def own_replicas(
    tmp_path: Path, postgres_url: str, moto: Moto, openbao: OpenBao, secret_scan: Watcher
) -> Iterator[ReplicaSet]:
    with replica_set(tmp_path, postgres_url, moto, openbao, secret_scan) as made:
        yield made
