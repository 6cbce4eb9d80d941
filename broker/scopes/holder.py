"""The scopes in force in a running broker, and how they are reloaded, failing closed.

A scope whose file is broken on disk is not served at all: not its last good version
(which may grant more than the fix will), and not by pretending it never existed. Its
service is listed as invalid with where the file is broken (:attr:`ScopeSet.invalid`), so
its requests answer ``409 scope_invalid`` with ``file:line``, ``/readyz`` lists it and the
approvers are alerted (:meth:`broker.services.Services.on_scope_reload`). A file's service
is known from its last good version, or read from the broken file when it still says.
Listeners learn which services changed (added, removed, changed or broken), so caches can
drop what those scopes issued; a reload is logged with what changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from broker.errors import Problem
from broker.scopes.lint import LintContext
from broker.scopes.loader import declared_service
from broker.scopes.registry import LoadResult, ScopeSet, fingerprint, load_scope_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    applied: bool
    changed: frozenset[str]
    problems: tuple[Problem, ...]
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    invalid: frozenset[str] = frozenset()  # broken on disk: no longer served
    restored: frozenset[str] = frozenset()  # fixed: served again

    def describe(self) -> str:
        """What the reload did, in words, for the log."""
        parts = [
            f"{label} {', '.join(sorted(names))}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("served again (fixed)", self.restored),
                (
                    "changed",
                    self.changed - self.added - self.removed - self.invalid - self.restored,
                ),
                ("no longer served (invalid)", self.invalid),
            )
            if names
        ]
        return "; ".join(parts) or "nothing changed"


def invalid_services(previous: ScopeSet, result: LoadResult) -> dict[str, tuple[Problem, ...]]:
    """The services whose file is broken now: named by their last good version (or last
    known breakage), or by the broken file itself; a service served from another, valid
    file is not one of them."""
    by_file: dict[str, list[Problem]] = {}
    for problem in result.problems:
        by_file.setdefault(problem.path, []).append(problem)
    served = result.scope_set.scopes
    known: list[tuple[str, str]] = [(n, ls.scope.source) for n, ls in previous.loaded.items()]
    known += [(n, found[0].path) for n, found in previous.invalid.items() if found]
    known += [(name, path) for path in by_file if (name := declared_service(Path(path)))]
    invalid: dict[str, tuple[Problem, ...]] = {}
    for name, path in known:
        if name not in served and path in by_file:
            invalid.setdefault(name, tuple(by_file[path]))
    return dict(sorted(invalid.items()))


def _with_invalid(result: LoadResult, previous: ScopeSet) -> ScopeSet:
    return replace(result.scope_set, invalid=invalid_services(previous, result))


class ScopeHolder:
    def __init__(self, path: Path, ctx: LintContext) -> None:
        self.path = path
        self.ctx = ctx
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ReloadOutcome], None]] = []
        result = load_scope_set(path, ctx)
        self._current = _with_invalid(result, ScopeSet())
        self.last_problems: tuple[Problem, ...] = tuple(result.problems)

    @property
    def current(self) -> ScopeSet:
        return self._current

    def on_reload(self, listener: Callable[[ReloadOutcome], None]) -> None:
        self._listeners.append(listener)

    def changed_on_disk(self) -> bool:
        return fingerprint(self.path) != self._current.fingerprint

    def reload(self) -> ReloadOutcome:
        """Load the scope files again: new valid versions replace old ones, removed files
        remove their scope, and a file with problems takes its service out of service."""
        with self._lock:
            result = load_scope_set(self.path, self.ctx)
            old = self._current
            new = _with_invalid(result, old)
            self._current = new
            self.last_problems = tuple(result.problems)
            outcome = ReloadOutcome(
                applied=not result.problems,
                changed=_changed(old, new),
                problems=tuple(result.problems),
                added=frozenset(set(new.scopes) - set(old.scopes) - set(old.invalid)),
                restored=frozenset(set(new.scopes) & set(old.invalid)),
                removed=frozenset(set(old.scopes) - set(new.scopes) - set(new.invalid)),
                invalid=frozenset(set(new.invalid) - set(old.invalid)),
            )
        if result.problems:
            log.warning(
                "scope reload: %d problem(s); %s",
                len(result.problems),
                outcome.describe(),
                # Where each file is broken: callers only hear that the scope is invalid.
                extra={
                    "invalid": sorted(new.invalid),
                    "problems": [str(p) for p in result.problems[:20]],
                },
            )
        else:
            log.info("scope reload: %s", outcome.describe())
        for listener in self._listeners:
            listener(outcome)
        return outcome


def _changed(old: ScopeSet, new: ScopeSet) -> frozenset[str]:
    names: Iterable[str] = set(old.compiled) | set(new.compiled) | set(new.invalid)
    return frozenset(
        name
        for name in names
        if old.compiled.get(name) != new.compiled.get(name)
        or old.scopes.get(name) != new.scopes.get(name)
    )


class ScopeWatcher:
    """Poll the scope directory and reload when a file changes. (A SIGHUP to gunicorn's
    master reloads too, by replacing the workers, which load the scopes afresh.)"""

    def __init__(self, holder: ScopeHolder, interval_seconds: float = 2.0) -> None:
        self.holder = holder
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scope-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        last_seen = self.holder.current.fingerprint
        while not self._stop.wait(self.interval):
            try:
                now = fingerprint(self.holder.path)
                if now != last_seen:
                    last_seen = now
                    self.holder.reload()
            except Exception:  # noqa: BLE001 - the watcher must outlive a bad moment
                log.exception("scope watcher failed; retrying")
