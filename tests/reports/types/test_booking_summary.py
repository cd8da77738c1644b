"""Renderers and the monthly booking summary's arithmetic, without services."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from stream_app.db.tenancy import Organization, Venue
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.render.text import render_csv, render_json
from stream_app.reports.types import booking_summary
from stream_app.tables.bookings import table_key

ORG = Organization("org", "Ünïcode Weddings =HYPERLINK()", "Europe/Lisbon", "EUR")


def test_months_in_splits_partial_months_into_days() -> None:
    months = booking_summary.months_in(date(2016, 1, 30), date(2016, 3, 2))
    assert [m for m, _ in months] == ["2016-01", "2016-02", "2016-03"]
    assert months[0][1] == [date(2016, 1, 30), date(2016, 1, 31)]
    assert months[1][1] is None  # February 2016 (29 days) is whole
    assert months[2][1] == [date(2016, 3, 1), date(2016, 3, 2)]


def test_cancellation_rate_rounds_half_even() -> None:
    assert booking_summary.cancellation_rate(40060, 11122) == "27.76"
    assert booking_summary.cancellation_rate(8, 1) == "12.50"
    assert booking_summary.cancellation_rate(0, 0) is None


def _store() -> dict[str, Any]:
    row = {
        "totals": {
            "bookings": 3,
            "cancellations": 1,
            "booked_minor": {"EUR": 30001},
            "cancelled_minor": {"EUR": 10000},
        },
        "offset": 9,
    }
    day = {**row, "event_ids": ["a", "b", "c", "d"]}
    return {
        table_key("org", "v1", "month", "2016-02"): row,
        table_key("org", "v1", "day", "2016-01-31"): day,
    }


def test_summary_rows_read_months_and_days(tmp_path: Path) -> None:
    venues = [Venue("v1", '-Venue, "One"', None)]
    table = booking_summary.build_report(
        _store().get, ORG, venues, date(2016, 1, 31), date(2016, 2, 29)
    )
    rows = list(table.rows)
    assert rows[0][2:] == ["2016-01", 3, 1, "33.33", "EUR", "200.01", 20001]
    assert rows[1][2:] == ["2016-02", 3, 1, "33.33", "EUR", "200.01", 20001]

    store = ArtifactStore(tmp_path)
    with store.write("org", "r1", "s.csv", "csv", key=None) as (w, out_csv):
        render_csv(table, w)
    with store.write("org", "r1", "s.json", "json", key=None) as (w, out_json):
        render_json(table, w)
    raw = (tmp_path / out_csv[0].path).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    parsed = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    # a text cell starting with '-' is made inert; numbers are untouched
    assert parsed[1][1] == '\'-Venue, "One"'
    assert parsed[1][7] == "200.01"
    assert out_csv[0].rows == 2
    import hashlib

    assert out_csv[0].sha256 == hashlib.sha256(raw).hexdigest()
    assert out_csv[0].size_bytes == len(raw)
    doc = orjson.loads((tmp_path / out_json[0].path).read_bytes())
    assert doc["report"]["organization_name"] == ORG.name
    assert doc["rows"][0]["revenue"] == "200.01" and doc["rows"][0]["revenue_minor"] == 20001
    assert not list(tmp_path.rglob("*.partial-*"))


def test_two_currencies_repeat_the_counts_and_the_report_says_so(tmp_path: Path) -> None:
    """A venue-month with EUR and GBP revenue: two rows, each with the venue-month's 3
    bookings and 1 cancellation; the JSON's notes and column descriptions say they repeat."""
    month = {
        "totals": {
            "bookings": 3,
            "cancellations": 1,
            "booked_minor": {"EUR": 250000, "GBP": 500000},
            "cancelled_minor": {"GBP": 100000},
        }
    }
    table = booking_summary.build_report(
        {table_key("org", "barn", "month", "2026-06"): month}.get,
        ORG,
        [Venue("barn", "barn", None)],
        date(2026, 6, 1),
        date(2026, 6, 30),
    )
    assert [r[2:] for r in table.rows] == [
        ["2026-06", 3, 1, "33.33", "EUR", "2500.00", 250000],
        ["2026-06", 3, 1, "33.33", "GBP", "4000.00", 400000],
    ]
    store = ArtifactStore(tmp_path)
    with store.write("org", "r2", "s.json", "json", key=None) as (w, out):
        render_json(table, w)
    doc = orjson.loads((tmp_path / out[0].path).read_bytes())
    assert doc["report"]["notes"][-1] == booking_summary.REPEATED_COUNTS_NOTE
    assert "summing the bookings column over such rows counts them twice" in (
        booking_summary.REPEATED_COUNTS_NOTE
    )
    described = {c["name"]: c["description"] for c in doc["columns"]}
    assert described["bookings"].endswith(
        "repeated on each of its currency rows: count a venue-month once)"
    )
    assert described["cancellations"].startswith("of which cancelled (repeated on each currency")


def test_a_cancellation_of_a_booking_the_live_tables_never_saw_is_warned() -> None:
    """A trial user loaded a history, then cancelled one of its bookings live: the summary
    read revenue −22,895.31 for the month and said nothing."""

    def month(bookings: int, cancellations: int, booked: int, cancelled: int) -> dict[str, Any]:
        return {
            "totals": {
                "bookings": bookings,
                "cancellations": cancellations,
                "booked_minor": {"USD": booked} if booked else {},
                "cancelled_minor": {"USD": cancelled} if cancelled else {},
            }
        }

    store = {
        table_key("org", "barn", "month", "2026-12"): month(0, 1, 0, 2289531),  # only the cancel
        table_key("org", "barn", "month", "2026-11"): month(2, 1, 300, 100),  # a normal month
        table_key("org", "lodge", "month", "2026-11"): month(1, 1, 100, 500),  # more cancelled
    }
    venues = [Venue("barn", "barn", None), Venue("lodge", "lodge", None)]
    usd = Organization("org", "Venues", "America/New_York", "USD")
    table = booking_summary.build_report(
        store.get, usd, venues, date(2026, 11, 1), date(2026, 12, 31)
    )
    assert [r[8] for r in table.rows] == [200, -2289531, -400, 0]
    assert table.validation == (
        "warning: 2 venue-month(s) have more cancellations than bookings or a negative revenue"
        " (barn 2026-12, lodge 2026-11): cancellations of bookings these live tables never saw"
        " (a history loaded into PostgreSQL is not in them: see the README, History and live"
        " events together)",
    )
    clean = {k: v for k, v in store.items() if "2026-11" in k and "barn" in k}
    fine = booking_summary.build_report(
        clean.get, usd, venues[:1], date(2026, 11, 1), date(2026, 11, 30)
    )
    assert fine.validation == ()
