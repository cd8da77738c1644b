"""Fire times in UTC across daylight-saving changes, pinned with hand-computed literals.

2026 transitions used (from the IANA rules, worked out by hand):
- Europe/London: GMT→BST Sun 29 Mar 01:00 UTC (01:00 → 02:00 local);
  BST→GMT Sun 25 Oct 01:00 UTC (02:00 → 01:00 local).
- America/New_York: EST→EDT Sun 8 Mar 07:00 UTC (02:00 → 03:00 local);
  EDT→EST Sun 1 Nov 06:00 UTC (02:00 → 01:00 local).
- Australia/Adelaide (+09:30 / +10:30): ACDT→ACST Sun 5 Apr (03:00 → 02:00 local);
  ACST→ACDT Sun 4 Oct (02:00 → 03:00 local).
- Asia/Kolkata: +05:30 all year.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest

from stream_app.schedules.cron import (
    CronExpressionError,
    fire_times,
    latest_fire_time,
    next_fire_time,
    preview,
    validate_cron,
)


def utc(text: str) -> datetime:
    """``YYYY-MM-DD HH:MM`` as a UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def fires(expr: str, zone: str, after: str, count: int) -> list[str]:
    out = preview(expr, zone, utc(after), count)
    for t in out:
        assert t.tzinfo is UTC
    return [t.strftime("%Y-%m-%d %H:%M") for t in out]


# --- daily ------------------------------------------------------------------------------


def test_london_daily_spring_forward_fires_once_at_end_of_gap() -> None:
    # 01:30 does not exist on 29 Mar: it fires at 02:00 BST = 01:00 UTC.
    assert fires("30 1 * * *", "Europe/London", "2026-03-27 12:00", 3) == [
        "2026-03-28 01:30",  # GMT
        "2026-03-29 01:00",  # gap: 02:00 BST
        "2026-03-30 00:30",  # BST
    ]


def test_london_daily_fall_back_fires_once_at_first_occurrence() -> None:
    # 01:30 exists twice on 25 Oct (00:30 and 01:30 UTC): only the first fires.
    assert fires("30 1 * * *", "Europe/London", "2026-10-23 12:00", 3) == [
        "2026-10-24 00:30",  # BST
        "2026-10-25 00:30",  # first 01:30 (BST); not 01:30 UTC as well
        "2026-10-26 01:30",  # GMT
    ]


def test_london_daily_outside_the_changed_hour_shifts_by_an_hour() -> None:
    assert fires("0 9 * * *", "Europe/London", "2026-03-28 00:00", 2) == [
        "2026-03-28 09:00",
        "2026-03-29 08:00",
    ]
    assert fires("0 9 * * *", "Europe/London", "2026-10-25 00:00", 2) == [
        "2026-10-25 09:00",
        "2026-10-26 09:00",
    ]


def test_new_york_daily_spring_forward() -> None:
    # 02:30 does not exist on 8 Mar: fires at 03:00 EDT = 07:00 UTC.
    assert fires("30 2 * * *", "America/New_York", "2026-03-06 12:00", 3) == [
        "2026-03-07 07:30",  # EST (-5)
        "2026-03-08 07:00",  # gap: 03:00 EDT
        "2026-03-09 06:30",  # EDT (-4)
    ]


def test_new_york_daily_fall_back() -> None:
    assert fires("30 1 * * *", "America/New_York", "2026-10-30 12:00", 3) == [
        "2026-10-31 05:30",  # EDT
        "2026-11-01 05:30",  # first 01:30 (EDT) only
        "2026-11-02 06:30",  # EST
    ]


def test_started_inside_the_repeated_hour_does_not_fire_the_second_pass() -> None:
    # 01:10 UTC on 25 Oct is 01:10 GMT, the second pass; 01:30's first pass (00:30 UTC) is
    # already behind, so the next fire is the next day.
    assert next_fire_time("30 1 * * *", "Europe/London", utc("2026-10-25 01:10")) == utc(
        "2026-10-26 01:30"
    )
    # Started in the first pass (00:10 UTC = 01:10 BST): fires 20 minutes later.
    assert next_fire_time("30 1 * * *", "Europe/London", utc("2026-10-25 00:10")) == utc(
        "2026-10-25 00:30"
    )


def test_several_skipped_times_collapse_into_one_run() -> None:
    # 01:00 and 01:30 both fall in London's gap: one fire at 02:00 BST, then the next day.
    assert fires("0,30 1 * * *", "Europe/London", "2026-03-28 12:00", 3) == [
        "2026-03-29 01:00",
        "2026-03-30 00:00",
        "2026-03-30 00:30",
    ]


# --- weekly -----------------------------------------------------------------------------


def test_london_weekly_monday_across_both_changes() -> None:
    assert fires("0 8 * * MON", "Europe/London", "2026-03-20 00:00", 2) == [
        "2026-03-23 08:00",  # GMT
        "2026-03-30 07:00",  # BST
    ]
    assert fires("0 8 * * MON", "Europe/London", "2026-10-16 00:00", 2) == [
        "2026-10-19 07:00",  # BST
        "2026-10-26 08:00",  # GMT
    ]


def test_new_york_weekly_sunday_in_the_changed_hour() -> None:
    assert fires("30 2 * * SUN", "America/New_York", "2026-02-28 00:00", 3) == [
        "2026-03-01 07:30",
        "2026-03-08 07:00",  # gap
        "2026-03-15 06:30",
    ]
    assert fires("30 1 * * SUN", "America/New_York", "2026-10-24 00:00", 3) == [
        "2026-10-25 05:30",
        "2026-11-01 05:30",  # once
        "2026-11-08 06:30",
    ]


# --- monthly ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "zone", "spring", "autumn"),
    [
        pytest.param(
            "0 8 1 * *",
            "Europe/London",
            ["2026-03-01 08:00", "2026-04-01 07:00"],
            ["2026-10-01 07:00", "2026-11-01 08:00"],
            id="london",
        ),
        pytest.param(
            "0 9 1 * *",
            "America/New_York",
            ["2026-03-01 14:00", "2026-04-01 13:00"],
            # 1 Nov 2026 is itself the fall-back day; 09:00 is after the change (EST).
            ["2026-10-01 13:00", "2026-11-01 14:00"],
            id="new-york",
        ),
    ],
)
def test_monthly_first_day_across_both_changes(
    expr: str, zone: str, spring: list[str], autumn: list[str]
) -> None:
    assert fires(expr, zone, "2026-02-15 00:00", 2) == spring
    assert fires(expr, zone, "2026-09-15 00:00", 2) == autumn


def test_london_monthly_first_monday_0800() -> None:
    # 2 Mar 2026 and 6 Apr 2026 are the first Mondays.
    assert fires("0 8 * * MON#1", "Europe/London", "2026-02-10 00:00", 2) == [
        "2026-03-02 08:00",
        "2026-04-06 07:00",
    ]


# --- wildcard hours: real elapsed time --------------------------------------------------


def test_hourly_fires_in_both_passes_of_the_repeated_hour() -> None:
    assert fires("30 * * * *", "America/New_York", "2026-11-01 04:00", 4) == [
        "2026-11-01 04:30",  # 00:30 EDT
        "2026-11-01 05:30",  # 01:30 EDT
        "2026-11-01 06:30",  # 01:30 EST
        "2026-11-01 07:30",  # 02:30 EST
    ]


def test_hourly_has_nothing_in_the_skipped_hour() -> None:
    assert fires("30 * * * *", "America/New_York", "2026-03-08 05:00", 3) == [
        "2026-03-08 05:30",  # 00:30 EST
        "2026-03-08 06:30",  # 01:30 EST
        "2026-03-08 07:30",  # 03:30 EDT (02:30 does not exist)
    ]


# --- 30-minute offsets ------------------------------------------------------------------


def test_kolkata_plus_0530() -> None:
    assert fires("0 9 * * *", "Asia/Kolkata", "2026-03-07 00:00", 2) == [
        "2026-03-07 03:30",
        "2026-03-08 03:30",
    ]
    assert fires("0 8 * * MON", "Asia/Kolkata", "2026-03-01 00:00", 1) == ["2026-03-02 02:30"]


def test_adelaide_daily_across_both_changes() -> None:
    assert fires("0 9 * * *", "Australia/Adelaide", "2026-04-03 00:00", 3) == [
        "2026-04-03 22:30",  # 4 Apr 09:00 ACDT (+10:30)
        "2026-04-04 23:30",  # 5 Apr 09:00 ACST (+09:30)
        "2026-04-05 23:30",
    ]
    assert fires("0 9 * * *", "Australia/Adelaide", "2026-10-02 00:00", 2) == [
        "2026-10-02 23:30",  # 3 Oct 09:00 ACST
        "2026-10-03 22:30",  # 4 Oct 09:00 ACDT
    ]


def test_adelaide_time_in_the_gap() -> None:
    # 02:30 on 4 Oct does not exist: fires at 03:00 ACDT = 16:30 UTC on 3 Oct.
    assert fires("30 2 * * *", "Australia/Adelaide", "2026-10-02 00:00", 3) == [
        "2026-10-02 17:00",  # 3 Oct 02:30 ACST
        "2026-10-03 16:30",
        "2026-10-04 16:00",  # 5 Oct 02:30 ACDT
    ]


# --- search and validation --------------------------------------------------------------


def test_fire_times_are_strictly_after_and_increasing() -> None:
    it = fire_times("*/15 * * * *", "UTC", utc("2026-01-01 00:00"))
    got = [next(it) for _ in range(3)]
    assert got == [utc("2026-01-01 00:15"), utc("2026-01-01 00:30"), utc("2026-01-01 00:45")]


def test_latest_fire_time_after_a_year_of_every_minute_is_cheap() -> None:
    started = time.perf_counter()
    got = latest_fire_time("* * * * *", "UTC", utc("2025-01-01 00:00"), utc("2026-01-01 12:34"))
    assert got == utc("2026-01-01 12:34")
    assert time.perf_counter() - started < 0.5
    assert latest_fire_time(
        "0 8 1 1 *", "Europe/London", utc("2020-01-01 00:00"), utc("2026-06-01 00:00")
    ) == utc("2026-01-01 08:00")
    assert (
        latest_fire_time("0 8 1 1 *", "UTC", utc("2026-01-01 08:00"), utc("2026-06-01 00:00"))
        is None
    )
    # the bound is exclusive below and inclusive above
    assert latest_fire_time(
        "0 8 * * *", "UTC", utc("2026-01-01 07:59"), utc("2026-01-01 08:00")
    ) == utc("2026-01-01 08:00")


@pytest.mark.parametrize(
    ("expr", "part"),
    [
        ("61 * * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 0 32 * *", "day-of-month"),
        ("0 0 1 13 *", "month"),
        ("0 0 * * 9", "day-of-week"),
        ("0 0 * *", "expression"),
        ("0 0 0 * * *", "expression"),
        ("0 0 30 2 *", "day-of-month"),
    ],
)
def test_bad_cron_names_the_field(expr: str, part: str) -> None:
    with pytest.raises(CronExpressionError) as err:
        validate_cron(expr)
    assert err.value.part == part


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        (
            "0 8 30 2 *",
            "day-of-month field '30' never occurs in month field '2' (no such date), so the "
            "expression never fires",
        ),
        ("0 8 31 4,6 *", "day-of-month field '31' never occurs in month field '4,6'"),
        ("0 8 32 2 *", "day-of-month field '32' is not valid"),
        ("@daily", "'@daily' is a macro; give the 5 fields"),
        ("@weekly", "write '0 0 * * 0' instead"),
        ("@reboot", "'@reboot' is a macro; give the 5 fields (minute hour"),
        # an attacker round: a no-break space was taken for a field separator
        ("0\u00a08 * * *", "'0\\xa08 * * *' holds a character that is not ASCII"),
        ("0 \uff18 * * *", "holds a character that is not ASCII; fields are separated by spaces"),
    ],
)
def test_a_date_that_never_occurs_and_a_macro_are_named(expr: str, reason: str) -> None:
    with pytest.raises(CronExpressionError) as err:
        validate_cron(expr)
    assert reason in err.value.reason
    assert ("@reboot" not in expr) or "instead" not in err.value.reason


def test_unknown_zone_and_naive_datetimes_are_rejected() -> None:
    with pytest.raises(CronExpressionError) as err:
        validate_cron("0 8 * * *", "Europe/Atlantis")
    assert err.value.part == "time_zone"
    with pytest.raises(ValueError, match="naive"):
        next_fire_time("0 8 * * *", "UTC", datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="count"):
        preview("0 8 * * *", "UTC", utc("2026-01-01 00:00"), 0)


def test_preview_returns_count_items() -> None:
    got = preview("0 0 * * *", "UTC", utc("2026-01-01 00:00"), 10)
    assert got[0] == utc("2026-01-02 00:00")
    assert got[-1] == utc("2026-01-11 00:00")
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(got))


def test_a_preview_reaching_the_end_of_the_calendar_stops_there() -> None:
    """An attacker round's 500: ``0 0 * 2 MON#5`` (fifth Mondays of February: about every
    28 years) with ``count=1000`` ran cronsim past year 9999 (``OverflowError``). The preview
    holds the fire times up to then, each a fifth Monday of February, and no more."""
    start = datetime(2026, 12, 7, tzinfo=UTC)
    times = preview("0 0 * 2 MON#5", "UTC", start, count=1000)
    # a fifth Monday in February is the 29th of a leap year falling on a Monday
    expected = [
        datetime(year, 2, 29, tzinfo=UTC)
        for year in range(2027, 10_000)
        if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))
        and datetime(year, 2, 29, tzinfo=UTC).weekday() == 0
    ]
    assert times == expected[:1000]
    assert 0 < len(times) < 1000  # the calendar ended first
