"""Independent figures for the aggregation tests, straight from the hotel booking CSV.

Nothing here imports the product: the rows are read with :mod:`csv` and the statistics are
the textbook/PostgreSQL-documented definitions written out in plain Python.
"""

from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

MONTH_NUMBER = {
    m: i
    for i, m in enumerate(
        [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ],
        start=1,
    )
}
VENUE_OF_HOTEL = {"Resort Hotel": "resort-hotel", "City Hotel": "city-hotel"}


@dataclass(frozen=True, slots=True)
class CsvBooking:
    """One CSV row as a booking.

    Attributes:
        venue: ``resort-hotel`` or ``city-hotel``.
        arrival: the arrival date (the service date).
        nights: weekend + week nights.
        amount: ADR × nights in cents (exact).
        cancelled: ``is_canceled == 1``.
        booked_on: arrival − lead time (a local Lisbon date; booked at noon there).
    """

    venue: str
    arrival: date
    nights: int
    amount: int
    cancelled: bool
    booked_on: date


def read_csv(path: Path) -> list[CsvBooking]:
    """Every row with a non-negative ADR (the one negative row is not a storable booking)."""
    out: list[CsvBooking] = []
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            adr = Decimal(r["adr"])
            if adr < 0:
                continue
            nights = int(r["stays_in_weekend_nights"]) + int(r["stays_in_week_nights"])
            cents = adr * 100 * nights
            assert cents == cents.to_integral_value()
            arrival = date(
                int(r["arrival_date_year"]),
                MONTH_NUMBER[r["arrival_date_month"]],
                int(r["arrival_date_day_of_month"]),
            )
            out.append(
                CsvBooking(
                    venue=VENUE_OF_HOTEL[r["hotel"]],
                    arrival=arrival,
                    nights=nights,
                    amount=int(cents),
                    cancelled=r["is_canceled"] == "1",
                    booked_on=arrival - timedelta(days=int(r["lead_time"])),
                )
            )
    return out


def avg_text(values: list[int]) -> str:
    """Mean as a decimal string, rounded half-even to 6 decimals (Fraction: exact)."""
    scaled = round(Fraction(sum(values), len(values)) * 10**6)  # round() on Fraction: half-even
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10**6)
    return f"{sign}{whole}.{frac:06d}"


def percentile_cont(values: list[int], p: float) -> float:
    """PostgreSQL's percentile_cont (documented: linear interpolation between the values at
    0-based positions floor and ceil of p·(n−1)), in IEEE doubles as PostgreSQL computes it."""
    xs = sorted(float(v) for v in values)
    pos = p * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def percentile_disc(values: list[int], p: float) -> int:
    """PostgreSQL's percentile_disc: the first value whose position in the sorted list
    reaches the fraction p, i.e. the ceil(p·n)-th value (1-based, at least the first)."""
    xs = sorted(values)
    k = max(math.ceil(p * len(xs)), 1)
    return xs[k - 1]


def iso_week(d: date) -> str:
    """ISO 8601 week label ``YYYY-Www``."""
    y, w, _ = d.isocalendar()
    return f"{y:04d}-W{w:02d}"
