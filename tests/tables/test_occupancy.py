"""Live occupancy arithmetic: capacity, closed dates, overbooking, months, rounding."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from stream_app.tables.occupancy import occupancy, rate

JUNE = [date(2026, 6, 1) + timedelta(days=i) for i in range(30)]


def test_days_with_capacity_closures_and_overbooking() -> None:
    booked = {date(2026, 6, 1): 1, date(2026, 6, 2): 3, date(2026, 6, 3): 2, date(2026, 6, 4): -1}
    closed = {date(2026, 6, 3)}
    days = occupancy(JUNE[:4], booked, 2, closed, "day")
    got = [
        (p.period, p.available_slots, p.booked, p.occupied_slots, p.occupancy_rate) for p in days
    ]
    assert got == [
        ("2026-06-01", 2, 1, 1, "50.00"),
        ("2026-06-02", 2, 3, 2, "100.00"),  # overbooked: capped
        ("2026-06-03", 0, 2, 0, None),  # closed: nothing available
        ("2026-06-04", 2, 0, 0, "0.00"),  # a cancellation folded before its booking
    ]


def test_a_month_sums_its_dates_and_rounds_half_even() -> None:
    # capacity 3, 30 dates, one closed: 87 slots; one booking every date, two on 6 June
    booked = {d: 1 for d in JUNE}
    booked[date(2026, 6, 6)] = 2
    (june,) = occupancy(JUNE, booked, 3, {date(2026, 6, 10)}, "month")
    assert (june.period, june.available_slots, june.closed_dates) == ("2026-06", 87, 1)
    # occupied: 28 open dates with 1, one open date with 2 -> 30; the closed date adds nothing
    assert (june.booked, june.occupied_slots) == (31, 30)
    assert june.occupancy_rate == "34.48"  # 30 / 87 = 34.4827...
    assert rate(1, 8) == "12.50" and rate(1, 800) == "0.12"  # 0.125 -> 0.12 (half-even)


def test_unknown_capacity_leaves_slots_and_rate_unknown() -> None:
    (day,) = occupancy(JUNE[:1], {JUNE[0]: 2}, None, set(), "day")
    assert (day.available_slots, day.booked, day.occupied_slots, day.occupancy_rate) == (
        None,
        2,
        None,
        None,
    )
    (month,) = occupancy(JUNE, {JUNE[0]: 2, JUNE[1]: 1}, None, {JUNE[2]}, "month")
    assert (month.available_slots, month.booked, month.closed_dates, month.occupancy_rate) == (
        None,
        3,
        1,
        None,
    )


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="grain"):
        occupancy(JUNE, {}, 1, set(), "week")
    with pytest.raises(ValueError, match="capacity"):
        occupancy(JUNE, {}, -1, set(), "day")
