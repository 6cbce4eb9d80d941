"""The scopes in force in a running broker, and how they are reloaded.

On start, scope files with problems are reported and left out. On reload, a scope whose
new version has problems keeps its last good version (like a web server refusing a broken
configuration) and the problems are reported in the audit log. Listeners learn which
services changed, so caches can drop what those scopes issued.
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
        """Load the scope files again; a scope whose new version is invalid keeps its old one.

        New valid versions replace old ones, removed files remove their scope, and a file
        with problems leaves its service's last good version in force (a typo cannot take a
        service's scope away), while the problems are reported.
        """
        with self._lock:
            result = load_scope_set(self.path, self.ctx)
            old, new = self._current, result.scope_set
            broken = {p.path for p in result.problems}
            kept = {
                name: loaded
                for name, loaded in old.loaded.items()
                if name not in new.loaded and loaded.scope.source in broken
            }
            merged = ScopeSet(
                scopes={**{n: ls.scope for n, ls in kept.items()}, **new.scopes},
                loaded={**kept, **new.loaded},
                compiled={**{n: old.compiled[n] for n in kept}, **new.compiled},
                fingerprint=new.fingerprint,
            )
            changed = frozenset(
                name
                for name in set(old.compiled) | set(merged.compiled)
                if old.compiled.get(name) != merged.compiled.get(name)
                or old.scopes.get(name) != merged.scopes.get(name)
            )
            self._current = merged
            self.last_problems = tuple(result.problems)
            outcome = ReloadOutcome(not result.problems, changed, tuple(result.problems))
            if result.problems:
                log.warning(
                    "scope reload: %d problem(s); %d scope(s) keep their previous version",
                    len(result.problems),
                    len(kept),
                )
        for listener in self._listeners:
            listener(outcome)
        return outcome


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
