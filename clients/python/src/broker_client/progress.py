"""The wait for approvers, shown to the human while ``broker-creds`` (or an SDK running it
as ``credential_process``) waits.

On a terminal the status line is redrawn every second. When stderr is not a terminal but
the process has one (an AWS SDK captures a ``credential_process``' stderr and shows it
only on failure), the live line goes to ``/dev/tty`` and stderr gets one line per change.
Without any terminal (CI), stderr gets one line per change, so logs stay readable.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import IO, Literal

from broker_client.results import RequestState, format_seconds

ProgressMode = Literal["auto", "stderr", "none"]


def describe(state: RequestState, now: float) -> str:
    """One status line for a request, e.g. ``pending 1/2 approvals`` (pure)."""
    if state.status == "pending":
        left = format_seconds(state.expires_at.timestamp() - now)
        return (
            f"{state.request_id}: pending {state.approvals_received}/"
            f"{state.approvals_required} approvals (request expires in {left})"
        )
    if state.status == "approved":
        delay = state.delay_left(now)
        if delay > 0:
            return f"{state.request_id}: approved, delay ends in {format_seconds(delay)}"
        return f"{state.request_id}: approved, collecting"
    reason = f": {state.reason}" if state.reason else ""
    return f"{state.request_id}: {state.status}{reason}"


class Progress:
    """Notes and the live status line: ``live`` is redrawn in place (a terminal), ``log``
    gets one line per change (and every note)."""

    def __init__(
        self,
        clock: Callable[[], float],
        log: IO[str] | None = None,
        live: IO[str] | None = None,
        owned: IO[str] | None = None,
    ) -> None:
        self.clock = clock
        self.log = log
        self.live = live
        self._owned = owned  # a /dev/tty we opened, closed with us
        self.state: RequestState | None = None
        self._last = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_terminal(cls, clock: Callable[[], float], mode: ProgressMode = "auto") -> Progress:
        if mode == "none":
            return cls(clock)
        if mode == "stderr" or sys.stderr.isatty():
            live = sys.stderr if sys.stderr.isatty() else None
            return cls(clock, log=None if live else sys.stderr, live=live)
        tty = _controlling_terminal()
        return cls(clock, log=sys.stderr, live=tty, owned=tty)

    def note(self, text: str) -> None:
        with self._lock:
            self._clear()
            for stream in (self.live, self.log):
                if stream is not None:
                    _write(stream, text + "\n")
            self._draw()

    def update(self, state: RequestState) -> None:
        with self._lock:
            self.state = state
            line = describe(state, self.clock())
            if self.log is not None and line.split(" (")[0] != self._last.split(" (")[0]:
                _write(self.log, line + "\n")
            self._last = line
            if self.live is not None:
                self._draw()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._tick, daemon=True)
                    self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._clear()
            self.state = None
        if self._owned is not None:
            with contextlib.suppress(OSError):
                self._owned.close()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        if self.live is not None and self.state is not None:
            _write(self.live, "\r\x1b[K" + describe(self.state, self.clock()))

    def _clear(self) -> None:
        if self.live is not None and self.state is not None:
            _write(self.live, "\r\x1b[K")


def _write(stream: IO[str], text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed terminal must not fail a wait
        stream.write(text)
        stream.flush()


def _controlling_terminal() -> IO[str] | None:
    """The process's terminal for writing, when it has one (never becoming its owner)."""
    try:
        fd = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        return None
    return os.fdopen(fd, "w", encoding="utf-8", errors="replace")
