"""``broker-creds``' local cache: credentials and open request ids on disk.

One 0600 file per request key in a 0700 directory; files that are not ours or that others
could read are ignored, never trusted. A per-key lock serialises concurrent
``credential_process`` calls, so a burst of SDK refreshes opens one escalation, not
several. Each cached issuance remembers when the broker last confirmed that it still
stands (``checked_at``); the caller asks again after :data:`CHECK_SECONDS`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker_client.errors import BrokerClientError
from broker_client.results import Issued

CACHE_MARGIN_SECONDS = 300
CACHE_MARGIN_RATIO = 0.2
CACHE_VERSION = 2
#: How long the broker's word that an issuance still stands is trusted (seconds, not
#: minutes: a kill switch reaches cached credentials within this).
CHECK_SECONDS = 5.0
#: How many other cached issuances one run checks after finding one revoked.
MAX_OTHERS = 16


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-credential-broker"


@dataclass(frozen=True)
class CachedIssue:
    """Fresh cached credentials and when the broker last said they still stand."""

    issued: Issued
    checked_at: float


class LocalCache:
    def __init__(
        self,
        directory: Path,
        clock: Callable[[], float] = time.time,
        warn: Callable[[str], None] = lambda _: None,
        owner: str = "",
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.warn = warn
        self.owner = owner  # whose entries these are (:meth:`owner_of`): a broker and agent

    @staticmethod
    def owner_of(url: str, identity: str) -> str:
        """The broker and agent an entry belongs to, as a digest (no token on disk)."""
        return hashlib.sha256(json.dumps([url, identity]).encode()).hexdigest()[:24]

    @staticmethod
    def key(url: str, identity: str, request: Mapping[str, object]) -> str:
        material = json.dumps(
            {"url": url, "identity": identity, "request": request}, sort_keys=True
        )
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.directory.stat()
        if info.st_uid != os.getuid():
            raise OSError(f"{self.directory} belongs to another user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def read(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
                return None
            try:
                entry = json.loads(handle.read(1_000_000))
            except ValueError:
                return None
        if not isinstance(entry, dict) or entry.get("version") != CACHE_VERSION:
            return None
        return entry

    def write(self, key: str, entry: Mapping[str, Any]) -> None:
        """Replace the key's entry atomically; a cache that cannot be written only warns
        (the credentials are still handed out, just not remembered)."""
        path = self._path(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self._ensure_directory()
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": CACHE_VERSION, **entry}, handle)
            os.replace(temporary, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self.warn(f"warning: cannot write the cache in {self.directory}: {e.strerror or e}")

    def drop(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def issued(self, key: str) -> CachedIssue | None:
        """Cached credentials still fresh (before their expiry minus the safety margin)."""
        entry = self.read(key)
        if entry is None or entry.get("kind") != "issued":
            return None
        fresh_until, checked_at = entry.get("fresh_until"), entry.get("checked_at")
        if not isinstance(fresh_until, int | float) or fresh_until <= self.clock():
            return None
        body = entry.get("issued")
        try:
            issued = Issued.from_json(body) if isinstance(body, dict) else None
        except BrokerClientError:
            return None
        if issued is None:
            return None
        return CachedIssue(issued, float(checked_at) if isinstance(checked_at, int | float) else 0)

    def confirm(self, key: str, now: float) -> None:
        """Record that the broker said, at ``now``, that the key's issuance still stands."""
        entry = self.read(key)
        if entry is not None and entry.get("kind") == "issued":
            entry.pop("version", None)
            self.write(key, {**entry, "checked_at": now})

    def put_issued(self, key: str, issued: Issued) -> None:
        """Remember ``issued``, just fetched from (so confirmed by) the broker."""
        now = self.clock()
        expires = issued.expires_at.timestamp()
        margin = max(CACHE_MARGIN_SECONDS, CACHE_MARGIN_RATIO * (expires - now))
        if expires - margin <= now:
            self.drop(key)
            return
        entry = {
            "kind": "issued",
            "owner": self.owner,
            "fresh_until": expires - margin,
            "checked_at": now,
            "issued": issued.to_json(),
        }
        self.write(key, entry)

    def others(self, key: str) -> list[tuple[str, str]]:
        """(key, request id) of the owner's other cached issuances, at most MAX_OTHERS:
        when one turned out revoked, the kill switch may have reached these too."""
        found: list[tuple[str, str]] = []
        for path in sorted(self.directory.glob("*.json"))[: MAX_OTHERS * 4]:
            entry = self.read(path.stem) if path.stem != key else None
            if entry is None or entry.get("kind") != "issued" or not self.owner:
                continue
            body = entry.get("issued")
            request_id = body.get("request_id") if isinstance(body, dict) else None
            if entry.get("owner") == self.owner and isinstance(request_id, str):
                found.append((path.stem, request_id))
        return found[:MAX_OTHERS]

    def pending(self, key: str) -> str | None:
        """The id of an open request for the same key, if one was left waiting."""
        entry = self.read(key)
        if entry is None or entry.get("kind") != "pending":
            return None
        request_id, expires = entry.get("request_id"), entry.get("expires_at")
        if not isinstance(request_id, str) or not isinstance(expires, int | float):
            return None
        return request_id if expires > self.clock() else None

    def put_pending(self, key: str, request_id: str, expires_at: float) -> None:
        self.write(key, {"kind": "pending", "request_id": request_id, "expires_at": expires_at})

    @contextlib.contextmanager
    def lock(self, key: str, waiting: Callable[[], None]) -> Iterator[None]:
        """Hold the key's lock; call ``waiting`` once if another process holds it."""
        try:
            self._ensure_directory()
            fd = os.open(self.directory / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            self.warn(f"warning: cannot lock the cache in {self.directory}: {e.strerror or e}")
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
