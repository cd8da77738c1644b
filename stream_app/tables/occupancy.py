"""Live venue occupancy from the day rows of the bookings table (pure functions).

Definitions (the live view; the ``venue_occupancy`` report reads PostgreSQL history with the
same definitions, plus multi-night stays):

- *capacity*: events a venue can host per date (``venues.capacity`` in PostgreSQL); unknown
  capacity (NULL) leaves the slots and the rate unknown (``None``): a venue registered without
  a capacity (the hotels of the demo data) is not shown as full;
- *available slots* of a date: the capacity, or 0 on a closed date (``venue_closures``);
- *booked* on a date: bookings minus cancellations whose service date is that date (the
  venue's day row; a booking counts on its service date only, so a multi-night stay counts
  on its first night here);
- *occupied slots*: booked, capped at the available slots (an overbooked date is 100 %);
- *occupancy rate*: occupied ÷ available slots, as a percentage with two decimals, rounded
  half-even; a period with no available slot has no rate (``None``);
- a month's figures are the sums over its dates in the requested range.

The day rows move with every booking and cancellation folded, so a read is as live as the
table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal


@dataclass(frozen=True, slots=True)
class OccupancyPeriod:
    """Occupancy of one date or month.

    Attributes:
        period: ``YYYY-MM-DD`` or ``YYYY-MM``.
        available_slots / booked / occupied_slots: as in the module docstring; the slots are
            None when the venue's capacity is unknown.
        closed_dates: closed dates in the period.
        occupancy_rate: percentage string with two decimals, or None when nothing is available
            or the capacity is unknown.
    """

    period: str
    available_slots: int | None
    booked: int
    occupied_slots: int | None
    closed_dates: int
    occupancy_rate: str | None


def rate(occupied: int, available: int) -> str | None:
    """``occupied / available × 100`` with two decimals, half-even; None when ``available`` is 0."""
    if available <= 0:
        return None
    value = Decimal(occupied) * 100 / Decimal(available)
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def occupancy(
    dates: Iterable[date],
    booked_on: Mapping[date, int],
    capacity: int | None,
    closed: set[date],
    grain: str,
) -> list[OccupancyPeriod]:
    """Occupancy per date (``grain="day"``) or per month (``"month"``) over ``dates``.

    Args:
        dates: the dates of the range, ascending.
        booked_on: bookings minus cancellations per service date (missing = 0; a negative
            net, a cancellation folded before its booking, counts as 0).
        capacity: events per date; None (unknown) leaves slots and rates None.
        closed: the venue's closed dates.
        grain: ``day`` or ``month``.

    Raises:
        ValueError: ``grain`` is neither, or ``capacity`` is negative.
    """
    if grain not in ("day", "month"):
        raise ValueError(f"grain: {grain!r} is not 'day' or 'month'")
    known = capacity is not None
    cap = capacity or 0
    if cap < 0:
        raise ValueError(f"capacity: {capacity} is negative")
    sums: dict[str, list[int]] = {}
    for d in dates:
        key = d.isoformat() if grain == "day" else d.isoformat()[:7]
        is_closed = d in closed
        available = 0 if is_closed else cap
        booked = max(0, booked_on.get(d, 0))
        acc = sums.setdefault(key, [0, 0, 0, 0])
        acc[0] += available
        acc[1] += booked
        acc[2] += min(booked, available)
        acc[3] += int(is_closed)
    if not known:
        return [OccupancyPeriod(key, None, b, None, c, None) for key, (_, b, _, c) in sums.items()]
    return [OccupancyPeriod(key, a, b, o, c, rate(o, a)) for key, (a, b, o, c) in sums.items()]
