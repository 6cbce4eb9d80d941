"""Load scope files into the model, reporting every structural problem with its position.

Structure only: keys, types, names, placeholders, durations, as declared in
:mod:`broker.scopes.model` and checked by pydantic (:mod:`broker.schema`). The fail-closed
policy rules (access levels, wildcards, destructive actions, overlaps, TTL bounds,
approval counts) live in :mod:`broker.scopes.lint` and run on the loaded model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from pydantic import TypeAdapter

from broker.errors import Problem
from broker.schema import Labels, validate
from broker.scopes.model import Position, Scope
from broker.yamldoc import Document, DocumentError, Loc, read_document

API_VERSION = Scope.HEADER["apiVersion"]
KIND = Scope.HEADER["kind"]
SCOPE_SUFFIXES = (".yaml", ".yml")
# Problems name tiers, environments and freezes by their names: "tier 'write' ttl".
LABELS = Labels("scope", {"tiers": "tier", "environments": "environment", "freezes": "freeze"})

PathKey = tuple[object, ...]


@dataclass
class LoadedScope:
    """A scope and where each of its parts was written, for positioned lint messages.

    Positions come from the file's ``document`` while it is kept (during the lint), else
    from ``positions`` (what a loaded scope set keeps: its service's).
    """

    scope: Scope
    positions: dict[PathKey, Position] = field(default_factory=dict)
    document: Document | None = field(default=None, repr=False, compare=False)

    def position(self, *key: object) -> Position:
        """The most precise known position for a logical path into the scope."""
        probe: PathKey = tuple(key)
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        if self.document is not None:
            node = self.document.node(*self._document_loc(key))
            if node is not None:
                mark = node.start_mark
                return Position(self.scope.source, mark.line + 1, mark.column + 1)
        return Position(self.scope.source, 1, 1)

    def _document_loc(self, key: PathKey) -> tuple[Loc, bool]:
        """Where a logical path was written: (its location in the file, at the key or not)."""
        if key[:1] == ("service",):
            return ("metadata", "service"), False
        if len(key) == 2 and key[0] == "environments":
            return ("environments", str(key[1])), True
        if len(key) == 5 and key[2:4] in (("approval", "approvers"), ("approval", "groups")):
            tier = self.scope.tiers.get(key[1])  # type: ignore[call-overload]
            names = getattr(tier.approval, str(key[3]), ()) if tier and tier.approval else ()
            if key[4] in names:
                return (*key[:4], names.index(key[4])), False  # type: ignore[return-value]
        return tuple(k for k in key if isinstance(k, str | int)), False

    def slim(self) -> LoadedScope:
        """What a loaded scope set keeps: the scope and its service's position."""
        return LoadedScope(self.scope, {("service",): self.position("service")})


def scope_files(path: Path) -> Iterator[Path]:
    """The scope files under a path: the file itself, or *.yaml/*.yml in a directory tree.

    Hidden names are skipped: editors' backups, and the timestamped copies behind the links
    Kubernetes makes when it mounts a ConfigMap (each scope would load twice).
    """
    if path.is_file():
        yield path
        return
    found: list[str] = []
    for root, directories, files in os.walk(path):
        directories[:] = [d for d in directories if not d.startswith(".")]
        for name in files:
            full = os.path.join(root, name)
            if not name.startswith(".") and name.endswith(SCOPE_SUFFIXES) and os.path.isfile(full):
                found.append(full)
    for full in sorted(found):
        yield Path(full)


@cache
def schema() -> TypeAdapter[Scope]:
    """The scope model's validator, built on first use (forked workers inherit it)."""
    return TypeAdapter(Scope)


def declared_service(path: Path) -> str | None:
    """The service a scope file names (``metadata.service``), read as leniently as it can
    be: for a file with problems, which service it would be (None when it cannot be told)."""
    try:
        document = read_document(path)
    except (DocumentError, OSError):
        return None
    data = document.data
    metadata = data.get("metadata") if isinstance(data, dict) else None
    service = metadata.get("service") if isinstance(metadata, dict) else None
    return service if isinstance(service, str) and service else None


def load_scope_file(path: Path) -> tuple[LoadedScope | None, list[Problem]]:
    """Read and structurally check one file; never raises for bad content."""
    name = str(path)
    try:
        document = read_document(path)
    except DocumentError as e:
        return None, [e.problem]
    if document.root is None:
        return None, [Problem(name, 1, 1, "file is empty: expected a Scope document")]
    outcome = validate(schema(), document, LABELS, document.data)
    scope, problems = outcome
    if scope is None:
        return None, problems
    return LoadedScope(_placed(scope, document), document=document), []


def _placed(scope: Scope, document: Document) -> Scope:
    """The scope with its file's name, and each AWS statement with where it was written."""
    tiers = {}
    for name, tier in scope.tiers.items():
        statements = []
        for index, statement in enumerate(tier.aws):
            node = document.node(("tiers", name, "aws", index))
            mark = node.start_mark if node is not None else None
            position = Position(document.name, mark.line + 1, mark.column + 1) if mark else None
            statements.append(replace(statement, position=position))
        tiers[name] = replace(tier, aws=tuple(statements))
    return replace(scope, source=document.name, tiers=tiers)


def readable_scopes(path: Path) -> list[Scope]:
    """Every scope under ``path`` that reads as a Scope, neither linted nor compiled (no IAM
    action data is loaded): where `broker revoke` looks for the roles an agent may hold. A
    scope failing its lint is served by no replica; its roles only gain a needless deny."""
    scopes = []
    for file in scope_files(path) if path.exists() else ():
        loaded, _ = load_scope_file(file)
        if loaded is not None:
            scopes.append(loaded.scope)
    return scopes
