"""The hotel data set's mapping to booking events, checked against the file itself."""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, date, datetime
from pathlib import Path

from stream_app.replay import hotel
from stream_app.schemas import BookingEvent, EventValidationError, decode_event


def test_every_row_maps_once_with_deterministic_unique_ids(hotel_csv: Path) -> None:
    with gzip.open(hotel_csv, "rt", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cancelled_rows = sum(1 for r in rows if r["is_canceled"] == "1")
    events = hotel.map_file(hotel_csv)
    created = [e for e in events if e.payload["event_type"] == "booking_created"]
    cancelled = [e for e in events if e.payload["event_type"] == "booking_cancelled"]
    assert (len(created), len(cancelled)) == (len(rows), cancelled_rows) == (119_390, 44_224)
    ids = [str(e.payload["event_id"]) for e in events]
    assert len(set(ids)) == len(ids)
    # identical source rows (the file holds 31,994 exact copies) still get distinct ids
    seen: dict[tuple[str, ...], int] = {}
    duplicate_pair = None
    for n, r in enumerate(rows, start=1):
        key = tuple(r.values())
        if key in seen:
            duplicate_pair = (seen[key], n)
            break
        seen[key] = n
    assert duplicate_pair is not None
    a, b = duplicate_pair
    assert a < b and rows[a - 1] == rows[b - 1]  # two source lines, the same values
    assert hotel.event_id("hotel_bookings", a, "created") != hotel.event_id(
        "hotel_bookings", b, "created"
    )
    # a second mapping gives the same ids in the same order
    assert [str(e.payload["event_id"]) for e in hotel.map_file(hotel_csv)] == ids
    # event time order
    times = [e.occurred_at for e in events]
    assert times == sorted(times)


def test_first_row_fields_and_lisbon_noon(hotel_csv: Path) -> None:
    with gzip.open(hotel_csv, "rt", encoding="utf-8", newline="") as fh:
        first = next(csv.DictReader(fh))
    # Resort Hotel, lead_time 342, arrival 2015-07-01, 0 nights, ADR 0, not cancelled
    (ev,) = hotel.map_row(first, 1, "hotel_bookings")
    assert ev.key == b"hotel-demand-pt/resort-hotel"
    assert ev.payload["service_date"] == "2015-07-01"
    assert ev.payload["amount_minor"] == 0
    # booked 342 days before 2015-07-01 = 2014-07-24, 12:00 Lisbon summer time (UTC+1)
    assert ev.occurred_at == datetime(2014, 7, 24, 11, 0, tzinfo=UTC)
    winter = hotel.local_noon_utc(date(2016, 1, 15))
    assert winter == datetime(2016, 1, 15, 12, 0, tzinfo=UTC)


def test_revenue_is_adr_cents_times_nights_exactly() -> None:
    assert hotel.adr_cents("94.57") == 9457
    assert hotel.adr_cents("0.1") == 10
    assert hotel.adr_cents("-6.38") == -638
    row = {
        "hotel": "City Hotel",
        "is_canceled": "1",
        "lead_time": "10",
        "arrival_date_year": "2016",
        "arrival_date_month": "March",
        "arrival_date_day_of_month": "27",
        "stays_in_weekend_nights": "2",
        "stays_in_week_nights": "3",
        "adults": "2",
        "children": "NA",
        "babies": "0",
        "adr": "123.45",
        "reservation_status_date": "2016-03-01",
    }
    created, cancelled = hotel.map_row(row, 7, "src")
    assert created.payload["amount_minor"] == cancelled.payload["amount_minor"] == 61725
    assert created.payload["guest_count"] is None
    assert cancelled.payload["booking_id"] == created.payload["booking_id"] == "src-7"
    assert cancelled.occurred_at == datetime(2016, 3, 1, 12, 0, tzinfo=UTC)


def test_negative_adr_row_is_rejected_by_the_schema(hotel_csv: Path) -> None:
    negative = [e for e in hotel.map_file(hotel_csv) if int(str(e.payload["amount_minor"])) < 0]
    assert len(negative) == 1
    import orjson

    try:
        decode_event(orjson.dumps(negative[0].payload), BookingEvent)
    except EventValidationError as exc:
        assert exc.field == "$.amount_minor"
    else:
        raise AssertionError("a negative amount must not validate")
