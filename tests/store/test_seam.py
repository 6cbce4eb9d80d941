"""The store seam: the protocols services depend on, and the repositories behind them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from broker.store import base
from broker.store.counters import SqlCounters
from broker.store.engine import Database, make_engine
from broker.store.freezes import SqlFreezes
from broker.store.migrate import upgrade
from broker.store.records import FreezeRecord
from broker.store.sql import SqlStore

PROTOCOLS = [
    base.RequestStore,
    base.ApprovalStore,
    base.IssuedStore,
    base.FreezeStore,
    base.CounterStore,
    base.TokenStore,
    base.AuditStore,
    base.Store,
]


def protocol_methods(protocol: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(protocol, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_sql_store_implements_each_protocol_with_its_signatures(protocol: type) -> None:
    methods = protocol_methods(protocol)
    assert methods, protocol
    for name, signature in methods.items():
        implemented = inspect.signature(getattr(SqlStore, name))
        assert list(implemented.parameters) == list(signature.parameters), name
        defaults = [p.default for p in signature.parameters.values()]
        assert [p.default for p in implemented.parameters.values()] == defaults, name


def test_every_store_method_belongs_to_a_protocol() -> None:
    """Nothing a service could call on the store goes around the seam."""
    public = {
        name
        for name, member in inspect.getmembers(SqlStore, inspect.isfunction)
        if not name.startswith("_")
    }
    assert public - set(protocol_methods(base.Store)) == set()


def test_a_repository_works_on_its_own_database(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    upgrade(engine)
    database = Database(engine)
    freezes, counters = SqlFreezes(database), SqlCounters(database)
    stored = freezes.add_freeze(FreezeRecord("agent", "agent:x", "why", "test", 10.0))
    assert stored.id is not None and freezes.active_freezes() == [stored]
    assert freezes.lift_freezes("agent", "agent:x", 11.0) == 1
    assert freezes.active_freezes() == []
    assert counters.count_and_add("k", 60, 1, 100.0) == (True, 0, 100.0)
    assert counters.count_and_add("k", 60, 1, 101.0) == (False, 1, 100.0)
    engine.dispose()
