"""The hotel booking CSV read independently of the product: :mod:`csv` and the data set's
documented columns, for the expected figures of the aggregation, report and end-to-end tests.

Rules (the replay mapping's, restated): a row is a booking on its arrival date; nights are
weekend + week nights; the amount is ADR × nights in cents, exact; ``is_canceled = 1`` is a
cancelled booking; the one row with a negative ADR is not a storable booking and is left out.
"""

from __future__ import annotations

import calendar
import csv
import gzip
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

MONTH_NUMBER = {calendar.month_name[m]: m for m in range(1, 13)}
"""``arrival_date_month`` (an English month name) → its number."""
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
