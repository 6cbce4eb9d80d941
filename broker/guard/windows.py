"""Change-freeze windows of a scope: is a tier frozen at a given instant? Pure."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from broker.scopes.model import Freeze, Scope

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _in_recurring(freeze: Freeze, local: dt.datetime) -> bool:
    start = freeze.start_time or dt.time(0, 0)
    end = freeze.end_time  # None: until midnight
    now = local.time()
    today = local.weekday()
    if end is None or start < end:
        return today in freeze.days and now >= start and (end is None or now < end)
    # Overnight window (start after end, e.g. 22:00-06:00): it began on a listed day.
    if today in freeze.days and now >= start:
        return True
    yesterday = (today - 1) % 7
    return yesterday in freeze.days and now < end


def active_window(scope: Scope, tier: str, at: float) -> Freeze | None:
    """The first freeze of ``scope`` covering ``tier`` at epoch time ``at``, if any."""
    for freeze in scope.freezes:
        if tier not in freeze.tiers:
            continue
        if freeze.start is not None and freeze.end is not None:
            # Compare instants, not wall clocks: datetimes sharing a tzinfo compare by their
            # wall time, which is wrong across a DST change. A wall time in the repeated hour
            # names two instants: the window takes the earlier start and the later end, so
            # it fails closed.
            start = min(freeze.start.replace(fold=f).timestamp() for f in (0, 1))
            end = max(freeze.end.replace(fold=f).timestamp() for f in (0, 1))
            if start <= at < end:
                return freeze
            continue
        local = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(freeze.timezone))
        if _in_recurring(freeze, local):
            return freeze
    return None


def describe_window(freeze: Freeze) -> str:
    if freeze.start is not None and freeze.end is not None:
        return (
            f"'{freeze.name}' ({freeze.start.isoformat()} to {freeze.end.isoformat()}, "
            f"{freeze.timezone})"
        )
    days = ", ".join(DAY_NAMES[d] for d in freeze.days)
    start = (freeze.start_time or dt.time(0)).strftime("%H:%M")
    end = freeze.end_time.strftime("%H:%M") if freeze.end_time else "24:00"
    return f"'{freeze.name}' (every {days} {start}-{end} {freeze.timezone})"
