"""The shape of the package: small modules, and imports that run one way.

Every module of ``broker`` stays under :data:`MAX_LINES` lines, and no chain of imports
among ``broker`` modules leads back to where it started (imports inside functions and
under ``TYPE_CHECKING`` count: a cycle hidden in a function is still a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "broker"
CLIENT = Path(__file__).resolve().parents[1] / "clients" / "python" / "src" / "broker_client"
MAX_LINES = 500
# Modules other work is splitting now; each leaves this list as it shrinks (the test
# below fails for an entry that no longer needs to be here).
STILL_TOO_LONG: set[str] = set()


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (migrations are generated, not ours)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        found[".".join(parts)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The ``broker`` modules that module ``name`` (at ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # "from broker.api import pages" imports the module broker.api.pages.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        yield from (target for target in targets if target in known and target != name)


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as the list of modules along it, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return path[path.index(successor) :] + [successor]
            if successor not in state and (found := visit(successor)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_module_of_the_package_is_longer_than_the_limit() -> None:
    lengths = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in modules().values()
    }
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert set(too_long) <= STILL_TOO_LONG, too_long
    shortened = sorted(STILL_TOO_LONG - set(too_long))
    assert not shortened, f"under {MAX_LINES} lines now: take them off STILL_TOO_LONG"


def test_no_import_cycle_among_the_package_modules() -> None:
    known = modules()
    graph = {name: set(imported(path, name, known)) for name, path in known.items()}
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_the_client_package_is_small_and_never_imports_the_server() -> None:
    """The agent side installs alone: no module of ``broker_client`` imports ``broker``."""
    known = modules(CLIENT)
    assert "broker_client.cli" in known
    for name, path in known.items():
        assert len(path.read_text().splitlines()) <= MAX_LINES, name
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            assert not [n for n in names if n == "broker" or n.startswith("broker.")], name
    graph = {name: set(imported(path, name, known)) for name, path in known.items()}
    assert cycle(graph) is None, " -> ".join(cycle(graph) or [])
