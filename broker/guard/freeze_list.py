"""What is frozen now, and why: the kill switch's and circuit breaker's freezes (from the
shared store) and the scopes' change-freeze windows in force. Pure: ``broker freezes``
gathers the inputs and prints :func:`render`."""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.guard.windows import active_window, describe_window
from broker.scopes.model import Scope
from broker.store.records import FreezeRecord


@dataclass(frozen=True)
class WindowInForce:
    service: str
    window: str  # describe_window's text
    tiers: tuple[str, ...]


@dataclass(frozen=True)
class FreezeListing:
    freezes: tuple[FreezeRecord, ...]
    windows: tuple[WindowInForce, ...]
    other_windows: int  # change-freeze windows of the scopes not in force now


def list_freezes(
    freezes: Iterable[FreezeRecord], scopes: Iterable[Scope], now: float
) -> FreezeListing:
    windows: list[WindowInForce] = []
    total = 0
    for scope in sorted(scopes, key=lambda s: s.service):
        total += len(scope.freezes)
        by_window: dict[str, list[str]] = {}
        for tier in ("read", "write", "delete"):
            window = active_window(scope, tier, now)
            if window is not None:
                by_window.setdefault(describe_window(window), []).append(tier)
        windows.extend(WindowInForce(scope.service, w, tuple(t)) for w, t in by_window.items())
    return FreezeListing(tuple(freezes), tuple(windows), total - len(windows))


def unfreeze_command(freeze: FreezeRecord) -> str:
    """The command that lifts ``freeze`` (the reason is for the operator to write)."""
    if freeze.kind == "all":
        target = "--all"
    elif freeze.kind == "agent":
        target = f"--agent {shlex.quote(freeze.target)}"
    else:
        service, _, environment = freeze.target.partition("/")
        target = f"--service {shlex.quote(service)}"
        if environment:
            target += f" --environment {shlex.quote(environment)}"
    return f'broker unfreeze {target} --reason "..."'


def _when(at: float, now: float) -> str:
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    minutes = max(0, int(now - at)) // 60
    ago = f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
    return f"{stamp} ({ago} ago)"


def render(listing: FreezeListing, now: float) -> list[str]:
    lines: list[str] = []
    if listing.freezes:
        lines.append("Frozen (nothing new is issued to these until `broker unfreeze`):")
        for freeze in listing.freezes:
            lines.append(f"  {freeze.describe()}")
            lines.append(f"      why:   {freeze.reason}")
            lines.append(f"      since: {_when(freeze.created_at, now)}, by {freeze.created_by}")
            if freeze.lifted_at is not None:  # unfrozen, effective once the AWS cut-off passed
                stamp = dt.datetime.fromtimestamp(freeze.lifted_at, dt.UTC)
                lines.append(f"      lifted: from {stamp.strftime('%H:%M:%S UTC')}")
            else:
                lines.append(f"      lift:  {unfreeze_command(freeze)}")
    else:
        lines.append("Nothing is frozen by the kill switch or the circuit breaker.")
    if listing.windows:
        lines.append("Change freezes in force now (from the scope files):")
        for window in listing.windows:
            tiers = ", ".join(window.tiers)
            lines.append(f"  {window.service}: {window.window} stops {tiers} requests")
    else:
        lines.append("No change-freeze window of the scopes is in force now.")
    if listing.other_windows:
        lines.append(
            f"({listing.other_windows} other change-freeze window(s) in the scopes; "
            "`broker scopes plan` lists them.)"
        )
    return lines


def as_dict(listing: FreezeListing) -> dict[str, Any]:
    return {
        "freezes": [
            {
                "kind": f.kind,
                "target": f.target,
                "reason": f.reason,
                "created_by": f.created_by,
                "created_at": f.created_at,
                "lift": unfreeze_command(f),
            }
            for f in listing.freezes
        ],
        "change_freezes": [
            {"service": w.service, "window": w.window, "tiers": list(w.tiers)}
            for w in listing.windows
        ],
        "other_change_freezes": listing.other_windows,
    }
