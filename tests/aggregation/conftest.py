"""Data of the aggregation tests: the real hotel bookings of one organisation, and crafted rows
of two others that must never be counted for it.

``agg-hotel`` (Europe/Lisbon) holds every row of the hotel booking CSV, loaded with COPY
(:func:`stream_app.db.history.copy_bookings`) through the project's mapping; ``agg-other``
(Pacific/Auckland) reuses the same venue ids and dates and holds EUR and USD amounts, so a
query that forgot the tenant would count them; ``agg-empty`` has no rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest

from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.replay import hotel
from stream_app.replay.produce import history_rows
from stream_app.settings import Settings
from tests.aggregation.expected import CsvBooking, read_csv

HOTEL_ORG = "agg-hotel"
OTHER_ORG = "agg-other"
EMPTY_ORG = "agg-empty"


def other_org_rows() -> list[BookingRow]:
    """Rows of ``agg-other`` (zone Pacific/Auckland, UTC+13 in January): hand-checked below."""

    def row(
        n: int,
        venue: str,
        day: date,
        booked_at: datetime,
        amount: int,
        currency: str,
        status: str = "booked",
    ) -> BookingRow:
        return BookingRow(
            organization_id=OTHER_ORG,
            id=f"other-{n}",
            venue_id=venue,
            service_date=day,
            nights=1,
            booked_at=booked_at,
            amount_minor=amount,
            currency=currency,
            status=status,
            cancelled_at=None,
            source_event_id=None,
        )

    jan31, feb10 = datetime(2016, 1, 31, tzinfo=UTC), datetime(2016, 2, 10, tzinfo=UTC)
    return [
        # 2016-01-31 12:00 UTC is 2016-02-01 01:00 in Auckland: month 2016-02 there
        row(1, "city-hotel", date(2016, 3, 5), jan31.replace(hour=12), 1000, "EUR"),
        # 2016-01-31 10:00 UTC is 2016-01-31 23:00 in Auckland: month 2016-01
        row(2, "city-hotel", date(2016, 3, 5), jan31.replace(hour=10), 2001, "EUR"),
        row(3, "city-hotel", date(2016, 3, 6), feb10, 5000, "USD"),
        row(
            4,
            "resort-hotel",
            date(2016, 3, 6),
            feb10,
            7000,
            "USD",
        ),
        row(
            5,
            "resort-hotel",
            date(2016, 7, 1),
            feb10,
            10**12,
            "EUR",
        ),
    ]


@dataclass(frozen=True)
class AggData:
    """The loaded data and the CSV read independently."""

    settings: Settings
    csv: list[CsvBooking]


@pytest.fixture(scope="session")
async def agg_data(settings: Settings, hotel_csv: Path) -> AggData:
    """Load the three organisations once per session (idempotent: COPY + ON CONFLICT)."""
    events = await asyncio.to_thread(hotel.map_file, hotel_csv)
    rows, _ = history_rows(events)
    rows = [dataclasses.replace(r, organization_id=HOTEL_ORG) for r in rows]
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org, zone in (
            (HOTEL_ORG, "Europe/Lisbon"),
            (OTHER_ORG, "Pacific/Auckland"),
            (EMPTY_ORG, "UTC"),
        ):
            await upsert_organization(conn, Organization(org, org, zone, "EUR"))
            for venue in ("city-hotel", "resort-hotel"):
                await upsert_venue(conn, org, Venue(venue, venue, None))
        await copy_bookings(conn, rows)
        await copy_bookings(conn, other_org_rows())
        await conn.execute("ANALYZE bookings")
    finally:
        await conn.close()
    return AggData(settings, await asyncio.to_thread(read_csv, hotel_csv))
