"""Load a whole tree of scope files: every file checked, every problem kept, duplicates found."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import Problem
from broker.scopes.lint import LintContext, lint
from broker.scopes.loader import LoadedScope, load_scope_file, scope_files
from broker.scopes.model import Scope


@dataclass(frozen=True)
class ScopeSet:
    """The scopes in force, by service name.

    ``digest`` fingerprints the files (names, sizes, modification times) so a watcher can
    tell cheaply whether a reload is needed.
    """

    scopes: Mapping[str, Scope] = field(default_factory=dict)
    loaded: Mapping[str, LoadedScope] = field(default_factory=dict)
    digest: str = ""

    def get(self, service: str) -> Scope | None:
        return self.scopes.get(service)


@dataclass(frozen=True)
class LoadResult:
    scope_set: ScopeSet
    problems: list[Problem]
    files: int

    @property
    def ok(self) -> bool:
        return not self.problems


def load_scope_set(path: Path, ctx: LintContext) -> LoadResult:
    """Load and lint every scope file under ``path``; a scope with problems is left out."""
    if not path.exists():
        return LoadResult(ScopeSet(), [Problem(str(path), 1, 1, "no such file or directory")], 0)
    files = list(scope_files(path))
    if not files:
        reason = "directory holds no scope files (*.yaml, *.yml)"
        return LoadResult(ScopeSet(), [Problem(str(path), 1, 1, reason)], 0)
    problems: list[Problem] = []
    scopes: dict[str, LoadedScope] = {}
    digest = hashlib.sha256()
    for file in files:
        loaded, file_problems = load_scope_file(file)
        problems.extend(file_problems)
        try:
            stat = file.stat()
            digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
            pass
        if loaded is None:
            continue
        service = loaded.scope.service
        if service in scopes:
            position = loaded.position("service")
            problems.append(
                Problem(
                    position.path, position.line, position.column,
                    f"duplicate service '{service}': already defined in {scopes[service].scope.source}",
                )
            )
            continue
        lint_problems = lint(loaded, ctx)
        problems.extend(lint_problems)
        if not lint_problems:
            scopes[service] = loaded
    scope_set = ScopeSet(
        scopes={name: loaded.scope for name, loaded in sorted(scopes.items())},
        loaded=dict(sorted(scopes.items())),
        digest=digest.hexdigest(),
    )
    return LoadResult(scope_set, problems, len(files))
