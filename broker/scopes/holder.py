"""The scopes in force in a running broker, and how they are reloaded.

A reload replaces the whole set only when every file is valid; otherwise the last good set
stays in force (like a web server refusing a broken configuration) and the failure is
reported in /readyz and the audit log. Listeners learn which services changed, so caches
can drop what those scopes issued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.errors import Problem
from broker.scopes.lint import LintContext
from broker.scopes.registry import ScopeSet, fingerprint, load_scope_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadOutcome:
    applied: bool
    changed: frozenset[str]
    problems: tuple[Problem, ...]


class ScopeHolder:
    def __init__(self, path: Path, ctx: LintContext) -> None:
        self.path = path
        self.ctx = ctx
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ReloadOutcome], None]] = []
        self.last_problems: tuple[Problem, ...] = ()
        result = load_scope_set(path, ctx)
        self._current = result.scope_set
        self.last_problems = tuple(result.problems)

    @property
    def current(self) -> ScopeSet:
        return self._current

    def on_reload(self, listener: Callable[[ReloadOutcome], None]) -> None:
        self._listeners.append(listener)

    def changed_on_disk(self) -> bool:
        return fingerprint(self.path) != self._current.fingerprint

    def reload(self) -> ReloadOutcome:
        with self._lock:
            result = load_scope_set(self.path, self.ctx)
            if result.problems:
                self.last_problems = tuple(result.problems)
                outcome = ReloadOutcome(False, frozenset(), tuple(result.problems))
                log.warning(
                    "scope reload refused: %d problem(s); the previous scopes stay in force",
                    len(result.problems),
                )
            else:
                old, new = self._current, result.scope_set
                changed = frozenset(
                    name
                    for name in set(old.compiled) | set(new.compiled)
                    if old.compiled.get(name) != new.compiled.get(name)
                    or old.scopes.get(name) != new.scopes.get(name)
                )
                self._current = new
                self.last_problems = ()
                outcome = ReloadOutcome(True, changed, ())
        for listener in self._listeners:
            listener(outcome)
        return outcome


class ScopeWatcher:
    """Poll the scope directory and reload when a file changes (SIGHUP also reloads)."""

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
