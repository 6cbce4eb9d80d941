"""Load a whole tree of scope files: every file checked and compiled, every problem kept.

A scope is in force only when it loads, passes every lint rule and compiles (its session
policies fit STS's limit). The compiled documents are kept with the scope, so the service
compiles each scope once per load, not once per request.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.errors import PolicyTooLarge, Problem
from broker.policy.compiler import compile_scope
from broker.scopes.lint import LintContext, lint
from broker.scopes.loader import LoadedScope, load_scope_file, schema, scope_files
from broker.scopes.model import Scope

# Below this many files a process pool costs more than it saves.
PARALLEL_MIN_FILES = 64


@dataclass(frozen=True)
class ScopeSet:
    """The scopes in force, by service name, with their compiled documents."""

    scopes: Mapping[str, Scope] = field(default_factory=dict)
    loaded: Mapping[str, LoadedScope] = field(default_factory=dict)
    compiled: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    fingerprint: str = ""
    # Services whose file is broken on disk: not served, with where the file is broken.
    invalid: Mapping[str, tuple[Problem, ...]] = field(default_factory=dict)

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


@dataclass(frozen=True)
class _FileResult:
    loaded: LoadedScope | None
    compiled: dict[str, Any] | None
    problems: list[Problem]


def fingerprint(path: Path) -> str:
    """Names, sizes and modification times of the scope files: cheap change detection."""
    parts = []
    for file in scope_files(path) if path.exists() else ():
        try:
            stat = file.stat()
        except OSError:
            continue
        parts.append(f"{file}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(parts)


def _load_one(file: Path, ctx: LintContext) -> _FileResult:
    return _slim(_checked(file, ctx))


def _checked(file: Path, ctx: LintContext) -> _FileResult:
    loaded, problems = load_scope_file(file)
    if loaded is None:
        return _FileResult(None, None, problems)
    problems = lint(loaded, ctx)
    if problems:
        return _FileResult(loaded, None, problems)
    try:
        compiled = compile_scope(loaded.scope, ctx.iam)
    except PolicyTooLarge as e:
        position = loaded.position("tiers", e.tier)
        problem = Problem(
            position.path, position.line, position.column, f"{e.message} [session-policy-size]"
        )
        return _FileResult(loaded, None, [problem])
    return _FileResult(loaded, compiled, [])


# Set in the parent before forking so workers inherit it instead of unpickling the IAM
# database (millions of objects) from the parent.
_worker_ctx: LintContext | None = None


def _load_chunk(files: Sequence[Path]) -> list[_FileResult]:
    assert _worker_ctx is not None
    return [_load_one(file, _worker_ctx) for file in files]


def _slim(result: _FileResult) -> _FileResult:
    """What the set keeps of a file's result: the positions served the lint; only the
    service's remains, for a duplicate-service problem (and pickling every position back
    from a worker cost more than the work saved)."""
    if result.loaded is None:
        return result
    return _FileResult(result.loaded.slim(), result.compiled, result.problems)


def _load_all(files: list[Path], ctx: LintContext, workers: int) -> list[_FileResult]:
    if (
        workers <= 1
        or len(files) < PARALLEL_MIN_FILES
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return [_load_one(file, ctx) for file in files]
    global _worker_ctx
    _worker_ctx = ctx
    schema()  # built once here rather than in every worker
    try:
        chunks = [files[i::workers] for i in range(workers)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_load_chunk, chunks)
    finally:
        _worker_ctx = None
    by_file = {
        id(f): r
        for chunk, results in zip(chunks, parts, strict=True)
        for f, r in zip(chunk, results, strict=True)
    }
    return [by_file[id(f)] for f in files]


def load_scope_set(path: Path, ctx: LintContext, workers: int = 1) -> LoadResult:
    """Load, lint and compile every scope file under ``path``.

    A scope with problems is left out; the problems of every file are returned. With
    ``workers`` > 1, large trees are processed by that many forked processes (the command
    line does this; the long-running service, which has threads, does not fork).
    """
    if not path.exists():
        return LoadResult(ScopeSet(), [Problem(str(path), 1, 1, "no such file or directory")], 0)
    files = list(scope_files(path))
    if not files:
        reason = "directory holds no scope files (*.yaml, *.yml)"
        return LoadResult(ScopeSet(), [Problem(str(path), 1, 1, reason)], 0)
    problems: list[Problem] = []
    scopes: dict[str, LoadedScope] = {}
    compiled: dict[str, dict[str, Any]] = {}
    with _collector_paused():
        results = _load_all(files, ctx, workers)
    for result in results:
        problems.extend(result.problems)
        if result.loaded is None:
            continue
        service = result.loaded.scope.service
        if service in scopes:
            position = result.loaded.position("service")
            problems.append(
                Problem(
                    position.path,
                    position.line,
                    position.column,
                    f"duplicate service '{service}': "
                    f"already defined in {scopes[service].scope.source}",
                )
            )
            continue
        if result.compiled is not None:
            scopes[service] = result.loaded
            compiled[service] = result.compiled
    scope_set = ScopeSet(
        scopes={name: loaded.scope for name, loaded in sorted(scopes.items())},
        loaded=dict(sorted(scopes.items())),
        compiled=dict(sorted(compiled.items())),
        fingerprint=fingerprint(path),
    )
    return LoadResult(scope_set, problems, len(files))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk load, then freeze what was built.

    Loading builds many long-lived, acyclic objects (scopes, compiled documents); each
    automatic collection would walk all of them again, which measured as two thirds of the
    load time for 1,000 files, and the first collection after the load would still walk
    them once more. Freezing moves them out of the collector's sight for good; reference
    counting still frees them when a reload replaces them. (The price: the few reference
    cycles made while loading, such as the tracebacks of refused files, are not reclaimed.)
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
