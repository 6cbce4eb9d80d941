"""Change-freeze windows at their edges, across time zones and DST changes (pure).

Each case loads a real scope file (so "24:00", dates and naive times are read the way the
broker reads them) and asks :func:`active_window` about one instant, given as epoch seconds:
the guard's injected clock is all the window logic ever sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.guard.windows import active_window, describe_window
from broker.scopes.loader import load_scope_file
from broker.scopes.model import Scope
from tests.guard.helpers import epoch, write_scope

NY = "America/New_York"
BERLIN = "Europe/Berlin"
TOKYO = "Asia/Tokyo"


def scope_with(tmp_path: Path, freezes: str) -> Scope:
    write_scope(tmp_path, freezes)
    loaded, problems = load_scope_file(tmp_path / "shop.yaml")
    assert not problems and loaded is not None, problems
    return loaded.scope


def frozen(scope: Scope, at: float, tier: str = "write") -> str | None:
    window = active_window(scope, tier, at)
    return None if window is None else window.name


# -- fixed ranges ------------------------------------------------------------------------

YEAR_END = """\
- name: year-end close
  start: 2026-12-20T00:00:00
  end: 2027-01-04T00:00:00
  timezone: America/New_York
"""


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (epoch("2026-12-19T23:59:59", NY), None),  # one second before the start
        (epoch("2026-12-20T00:00:00", NY), "year-end close"),  # the start is inside
        (epoch("2027-01-03T23:59:59", NY), "year-end close"),  # the last second
        (epoch("2027-01-04T00:00:00", NY), None),  # the end is outside
        # The same edges seen from UTC: New York is UTC-5 in winter.
        (epoch("2026-12-20T04:59:59"), None),
        (epoch("2026-12-20T05:00:00"), "year-end close"),
        (epoch("2027-01-04T04:59:59"), "year-end close"),
        (epoch("2027-01-04T05:00:00"), None),
        # ...and from Tokyo (UTC+9): the freeze starts there on the 20th at 14:00.
        (epoch("2026-12-20T13:59:59", TOKYO), None),
        (epoch("2026-12-20T14:00:00", TOKYO), "year-end close"),
    ],
)
def test_a_fixed_range_at_its_edges(tmp_path: Path, instant: float, expected: str | None) -> None:
    scope = scope_with(tmp_path, YEAR_END)
    assert frozen(scope, instant, "write") == expected
    assert frozen(scope, instant, "delete") == expected  # tiers default to write and delete
    assert frozen(scope, instant, "read") is None  # read is never frozen


def test_an_explicit_offset_wins_over_the_freezes_time_zone(tmp_path: Path) -> None:
    scope = scope_with(
        tmp_path,
        """\
        - name: tokyo launch
          start: 2027-01-10T09:00:00+09:00
          end: 2027-01-10T10:00:00+09:00
          timezone: Europe/Berlin
        """,
    )
    assert frozen(scope, epoch("2027-01-09T23:59:59")) is None
    assert frozen(scope, epoch("2027-01-10T00:00:00")) == "tokyo launch"
    assert frozen(scope, epoch("2027-01-10T00:59:59")) == "tokyo launch"
    assert frozen(scope, epoch("2027-01-10T01:00:00")) is None


def test_dates_without_a_time_mean_midnight_in_the_zone(tmp_path: Path) -> None:
    scope = scope_with(
        tmp_path,
        """\
        - name: audit day
          start: 2027-02-01
          end: 2027-02-02
          timezone: Europe/Berlin
        """,
    )
    assert frozen(scope, epoch("2027-01-31T22:59:59")) is None  # 23:59:59 in Berlin
    assert frozen(scope, epoch("2027-01-31T23:00:00")) == "audit day"
    assert frozen(scope, epoch("2027-02-01T22:59:59")) == "audit day"
    assert frozen(scope, epoch("2027-02-01T23:00:00")) is None


def test_a_fixed_range_across_a_dst_change_lasts_its_real_length(tmp_path: Path) -> None:
    """Noon to noon across the spring change in New York is 23 real hours."""
    scope = scope_with(
        tmp_path,
        """\
        - name: spring change
          start: 2027-03-13T12:00
          end: 2027-03-14T12:00
          timezone: America/New_York
        """,
    )
    start = epoch("2027-03-13T17:00:00")  # noon EST
    assert frozen(scope, start - 1) is None
    assert frozen(scope, start) == "spring change"
    assert frozen(scope, start + 23 * 3600 - 1) == "spring change"
    assert frozen(scope, start + 23 * 3600) is None  # noon EDT, 16:00 UTC


def test_a_range_starting_in_the_repeated_hour_stays_in_effect_during_the_repeat(
    tmp_path: Path,
) -> None:
    scope = scope_with(
        tmp_path,
        """\
        - name: after the change
          start: 2027-11-07T01:30
          end: 2027-11-08T00:00
          timezone: America/New_York
        """,
    )
    started = epoch("2027-11-07T01:30", NY)  # the first 01:30 (EDT), 05:30 UTC
    assert frozen(scope, started - 1) is None
    assert frozen(scope, started) == "after the change"
    # 40 minutes later the clocks read 01:10 again (EST): the freeze has begun.
    assert frozen(scope, epoch("2027-11-07T01:10", NY, fold=1)) == "after the change"


# -- recurring windows -------------------------------------------------------------------

WEEKEND_DELETES = """\
- name: weekend deletes
  recurring: {days: [sat, sun], start: "00:00", end: "24:00"}
  timezone: America/New_York
  tiers: [delete]
"""


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2027-01-08T23:59:59", None),  # Friday
        ("2027-01-09T00:00:00", "weekend deletes"),  # Saturday, first second
        ("2027-01-10T23:59:59", "weekend deletes"),  # Sunday, last second ("24:00")
        ("2027-01-11T00:00:00", None),  # Monday
    ],
)
def test_a_whole_day_window_ends_at_24_00(tmp_path: Path, local: str, expected: str | None) -> None:
    scope = scope_with(tmp_path, WEEKEND_DELETES)
    assert frozen(scope, epoch(local, NY), "delete") == expected
    assert frozen(scope, epoch(local, NY), "write") is None  # only delete is frozen


def test_the_weekend_is_the_weekend_of_the_freezes_zone(tmp_path: Path) -> None:
    scope = scope_with(tmp_path, WEEKEND_DELETES)
    # Saturday 03:00 in Tokyo is still Friday in New York; Monday 09:00 there is Sunday.
    assert frozen(scope, epoch("2027-01-09T03:00", TOKYO), "delete") is None
    assert frozen(scope, epoch("2027-01-11T09:00", TOKYO), "delete") == "weekend deletes"
    assert frozen(scope, epoch("2027-01-11T14:00", TOKYO), "delete") is None  # Monday 00:00 NY


FRIDAY_AFTERNOONS = """\
- name: friday deploys
  recurring: {days: [fri], start: "15:00", end: "24:00"}
  timezone: Europe/Berlin
"""


@pytest.mark.parametrize(
    ("utc", "expected"),
    [
        # Winter (CET, UTC+1): 15:00 in Berlin is 14:00 UTC.
        ("2027-03-26T13:59:59", None),
        ("2027-03-26T14:00:00", "friday deploys"),
        ("2027-03-26T22:59:59", "friday deploys"),
        ("2027-03-26T23:00:00", None),  # Saturday 00:00 in Berlin
        # Summer (CEST, UTC+2) after the change of 2027-03-28: an hour earlier in UTC.
        ("2027-04-02T12:59:59", None),
        ("2027-04-02T13:00:00", "friday deploys"),
        ("2027-04-02T13:30:00", "friday deploys"),
        ("2027-04-02T21:59:59", "friday deploys"),
        ("2027-04-02T22:00:00", None),
    ],
)
def test_a_recurring_window_follows_its_zones_dst(
    tmp_path: Path, utc: str, expected: str | None
) -> None:
    assert frozen(scope_with(tmp_path, FRIDAY_AFTERNOONS), epoch(utc)) == expected


NIGHTS = """\
- name: batch nights
  recurring: {days: [mon, tue, wed, thu, fri], start: "22:00", end: "06:00"}
  timezone: Asia/Tokyo
"""


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2027-01-11T21:59:59", None),  # Monday evening
        ("2027-01-11T22:00:00", "batch nights"),
        ("2027-01-12T05:59:59", "batch nights"),  # Tuesday morning: began Monday
        ("2027-01-12T06:00:00", None),
        ("2027-01-12T12:00:00", None),  # Tuesday noon
        ("2027-01-16T03:00:00", "batch nights"),  # Saturday 03:00: began Friday night
        ("2027-01-16T22:00:00", None),  # Saturday night is not listed
        ("2027-01-17T03:00:00", None),  # nor is Sunday morning (it began Saturday)
        ("2027-01-18T03:00:00", None),  # Monday 03:00: began Sunday, not listed
    ],
)
def test_an_overnight_window_belongs_to_the_day_it_starts(
    tmp_path: Path, local: str, expected: str | None
) -> None:
    assert frozen(scope_with(tmp_path, NIGHTS), epoch(local, TOKYO)) == expected


def test_an_overnight_window_wraps_around_the_week(tmp_path: Path) -> None:
    scope = scope_with(
        tmp_path,
        """\
        - name: sunday maintenance
          recurring: {days: [sun], start: "23:00", end: "02:00"}
          timezone: UTC
        """,
    )
    assert frozen(scope, epoch("2027-01-17T22:59:59")) is None  # Sunday
    assert frozen(scope, epoch("2027-01-17T23:00:00")) == "sunday maintenance"
    assert frozen(scope, epoch("2027-01-18T01:59:59")) == "sunday maintenance"  # Monday
    assert frozen(scope, epoch("2027-01-18T02:00:00")) is None


DST_NIGHT = """\
- name: sunday night
  recurring: {days: [sun], start: "01:00", end: "03:00"}
  timezone: America/New_York
"""


def test_a_recurring_window_on_the_spring_forward_night_skips_the_missing_hour(
    tmp_path: Path,
) -> None:
    """2027-03-14: 02:00 EST becomes 03:00 EDT, so 01:00-03:00 lasts one real hour."""
    scope = scope_with(tmp_path, DST_NIGHT)
    start = epoch("2027-03-14T01:00", NY)
    assert frozen(scope, start - 1) is None
    assert frozen(scope, start) == "sunday night"
    assert frozen(scope, start + 3600 - 1) == "sunday night"  # 01:59:59 EST
    assert frozen(scope, start + 3600) is None  # 03:00:00 EDT, one second later


def test_a_recurring_window_on_the_fall_back_night_covers_the_repeated_hour(
    tmp_path: Path,
) -> None:
    """2027-11-07: 02:00 EDT becomes 01:00 EST, so 01:00-03:00 lasts three real hours."""
    scope = scope_with(tmp_path, DST_NIGHT)
    start = epoch("2027-11-07T01:00", NY)
    assert frozen(scope, start - 1) is None
    assert frozen(scope, epoch("2027-11-07T01:30", NY, fold=0)) == "sunday night"
    assert frozen(scope, epoch("2027-11-07T01:30", NY, fold=1)) == "sunday night"
    assert frozen(scope, start + 3 * 3600 - 1) == "sunday night"  # 02:59:59 EST
    assert frozen(scope, start + 3 * 3600) is None


def test_the_first_matching_window_is_named(tmp_path: Path) -> None:
    scope = scope_with(tmp_path, YEAR_END + WEEKEND_DELETES)
    saturday = epoch("2026-12-26T12:00", NY)
    assert frozen(scope, saturday, "delete") == "year-end close"
    assert frozen(scope, epoch("2027-01-09T12:00", NY), "delete") == "weekend deletes"


def test_windows_are_described_with_their_zone(tmp_path: Path) -> None:
    scope = scope_with(tmp_path, YEAR_END + WEEKEND_DELETES + NIGHTS)
    assert [describe_window(f) for f in scope.freezes] == [
        "'year-end close' (2026-12-20T00:00:00-05:00 to 2027-01-04T00:00:00-05:00, "
        "America/New_York)",
        "'weekend deletes' (every Sat, Sun 00:00-24:00 America/New_York)",
        "'batch nights' (every Mon, Tue, Wed, Thu, Fri 22:00-06:00 Asia/Tokyo)",
    ]
