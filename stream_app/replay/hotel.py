"""Mapping of the hotel booking demand data set to booking events of one venue company.

Source: Antonio, de Almeida & Nunes, "Hotel booking demand datasets", Data in Brief 22 (2019)
41–49 (CC BY 4.0); 119,390 bookings of a resort hotel (H1) and a city hotel (H2) in Portugal,
arriving 2015-07-01 .. 2017-08-31. It stands in for a venue company's booking feed.

The mapping, row by row (``n`` = 1-based data row number in the file):

- organisation ``hotel-demand-pt`` (zone Europe/Lisbon, currency EUR; the data set states no
  currency, EUR is presumed) with two venues: ``resort-hotel`` and ``city-hotel``;
- one ``booking_created`` event per row: ``booking_id`` = ``<source>-<n>``; ``service_date`` =
  the arrival date (``arrival_date_year/month/day_of_month``); ``nights`` =
  ``stays_in_weekend_nights + stays_in_week_nights``; ``amount_minor`` = ADR in cents × nights
  (ADR is a per-night rate with up to two decimals, converted exactly with ``Decimal``);
  ``occurred_at`` (event time) = the booking date, arrival date − ``lead_time`` days, at 12:00
  Europe/Lisbon (the data set has dates, not times);
- one ``booking_cancelled`` event more for a row with ``is_canceled = 1`` (status Canceled or
  No-Show): ``occurred_at`` = ``reservation_status_date`` at 12:00 Europe/Lisbon, and
  ``amount_minor`` = the booked value, which the cancellation removes from revenue;
- ``event_id`` = UUIDv5 of ``<source>:<n>:created`` (or ``:cancelled``). It depends on the
  source name and row number, not on the row's content: 31,994 rows of the file are exact
  copies of another row and are distinct bookings.

A row with a negative ADR (one row: −6.38) maps to a negative ``amount_minor``; the schema
rejects it and the agent dead-letters it, naming ``$.amount_minor``. Nothing is clamped.
"""

from __future__ import annotations

import csv
import gzip
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from stream_app.errors import WeddingError

ORGANIZATION_ID = "hotel-demand-pt"
ORGANIZATION_NAME = "Hotel booking demand (Antonio et al. 2019)"
TIME_ZONE = "Europe/Lisbon"
CURRENCY = "EUR"
VENUES: dict[str, tuple[str, str]] = {
    "Resort Hotel": ("resort-hotel", "Resort Hotel (H1)"),
    "City Hotel": ("city-hotel", "City Hotel (H2)"),
}
EVENT_ID_NAMESPACE = uuid.UUID("6f4c1a52-2f0e-5b8e-9d0a-7e3b5c1d9a11")
MONTHS = {
    name: i
    for i, name in enumerate(
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
_ZONE = ZoneInfo(TIME_ZONE)
_NOON = time(12, 0)


class SourceRowError(WeddingError, ValueError):
    """A CSV row that cannot be mapped at all (e.g. an unknown hotel or month name)."""

    def __init__(self, row_number: int, field: str, reason: str) -> None:
        super().__init__(f"row {row_number}: {field}: {reason}")
        self.row_number = row_number
        self.field = field


@dataclass(frozen=True, slots=True)
class MappedEvent:
    """One event produced from one CSV row.

    Attributes:
        key: Kafka message key, ``organization_id/venue_id``.
        payload: the event as a JSON-ready dict (``wedding-bookings`` schema, version 1).
        occurred_at: event time (UTC), used to replay in event-time order.
        row_number: the source row.
    """

    key: bytes
    payload: dict[str, object]
    occurred_at: datetime
    row_number: int


def local_noon_utc(day: date) -> datetime:
    """12:00 of a local Europe/Lisbon date, as a UTC-aware datetime."""
    return datetime.combine(day, _NOON, tzinfo=_ZONE).astimezone(ZoneInfo("UTC"))


def event_id(source: str, row_number: int, kind: str) -> str:
    """The deterministic event id of row ``row_number`` of ``source`` (UUIDv5, RFC 4122)."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}:{row_number}:{kind}"))


def adr_cents(adr: str) -> int:
    """ADR text (``"94.575"`` is not expected; up to two decimals) as exact integer cents.

    Raises:
        ValueError: the value has more than two decimals or is not a number.
    """
    cents = Decimal(adr) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"adr: {adr!r} has more than two decimals")
    return int(cents)


REQUIRED_COLUMNS = (
    "hotel",
    "is_canceled",
    "lead_time",
    "arrival_date_year",
    "arrival_date_month",
    "arrival_date_day_of_month",
    "stays_in_weekend_nights",
    "stays_in_week_nights",
    "adults",
    "children",
    "babies",
    "adr",
    "reservation_status_date",
)


class SourceFileError(WeddingError, ValueError):
    """The file is not the hotel booking demand CSV (unreadable, wrong header, no rows)."""


def open_csv(path: Path) -> Iterator[dict[str, str]]:
    """Rows of the CSV at ``path`` (plain or ``.gz``) as dicts, streaming.

    Raises:
        SourceFileError: the file is not gzip/UTF-8 text, or its header lacks a column.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
            reader = csv.DictReader(text)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise SourceFileError(
                    f"{path}: not the hotel booking demand CSV (missing column(s) {missing})"
                )
            yield from reader
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceFileError(f"{path}: cannot read it as a (gzip) UTF-8 CSV: {exc}") from exc


def map_row(row: dict[str, str], row_number: int, source: str) -> list[MappedEvent]:
    """Map one CSV row to its booking event and, if cancelled, its cancellation event.

    Raises:
        SourceRowError: the hotel, month or a date field is unreadable.
    """
    try:
        venue_id, _ = VENUES[row["hotel"]]
    except KeyError:
        raise SourceRowError(row_number, "hotel", f"unknown hotel {row.get('hotel')!r}") from None
    try:
        arrival = date(
            int(row["arrival_date_year"]),
            MONTHS[row["arrival_date_month"]],
            int(row["arrival_date_day_of_month"]),
        )
        lead_time = int(row["lead_time"])
        nights = int(row["stays_in_weekend_nights"]) + int(row["stays_in_week_nights"])
        amount = adr_cents(row["adr"]) * nights
    except (KeyError, ValueError) as exc:
        raise SourceRowError(row_number, "arrival/stay fields", str(exc)) from exc
    guests: int | None = None
    if row["children"] != "NA":
        guests = int(row["adults"]) + int(row["children"]) + int(row["babies"])
    booking_id = f"{source}-{row_number}"
    key = f"{ORGANIZATION_ID}/{venue_id}".encode()
    booked_at = local_noon_utc(arrival - timedelta(days=lead_time))
    base: dict[str, object] = {
        "schema_version": 1,
        "organization_id": ORGANIZATION_ID,
        "booking_id": booking_id,
        "venue_id": venue_id,
        "service_date": arrival.isoformat(),
        "amount_minor": amount,
        "currency": CURRENCY,
        "nights": nights,
        "lead_time_days": lead_time,
        "guest_count": guests,
    }
    created = {
        **base,
        "event_id": event_id(source, row_number, "created"),
        "event_type": "booking_created",
        "occurred_at": booked_at.isoformat(),
    }
    out = [MappedEvent(key, created, booked_at, row_number)]
    if row["is_canceled"] == "1":
        cancelled_at = local_noon_utc(date.fromisoformat(row["reservation_status_date"]))
        cancelled = {
            **base,
            "event_id": event_id(source, row_number, "cancelled"),
            "event_type": "booking_cancelled",
            "occurred_at": cancelled_at.isoformat(),
        }
        out.append(MappedEvent(key, cancelled, cancelled_at, row_number))
    return out


def map_file(path: Path, source: str | None = None) -> list[MappedEvent]:
    """Every event of the file, sorted by event time (ties keep file order).

    Args:
        path: the CSV (``.csv`` or ``.csv.gz``).
        source: the name event ids are derived from; default: the file name without
            ``.csv``/``.gz`` (``hotel_bookings``). Two replays of one file with the same source
            give the same ids, hence the same totals.
    """
    name = source or path.name.removesuffix(".gz").removesuffix(".csv")
    events: list[MappedEvent] = []
    for n, row in enumerate(open_csv(path), start=1):
        events.extend(map_row(row, n, name))
    if not events:
        raise SourceFileError(f"{path}: the file has a header but no rows")
    events.sort(key=lambda e: e.occurred_at)
    return events
