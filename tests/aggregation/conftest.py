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
from typing import Any

import asyncpg
import pytest

from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.replay import hotel
from stream_app.replay.produce import history_rows
from stream_app.settings import Settings
from tests.hotel_csv import CsvBooking, read_csv

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


OTHER_TABLES: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {
    # table: (columns after organization_id, rows) of agg-other, hand-written
    "payments": (
        ("id", "booking_id", "kind", "amount_minor", "currency", "occurred_at"),
        [
            ("pay-1", "other-1", "payment", 600, "EUR", datetime(2016, 2, 1, 9, tzinfo=UTC)),
            ("pay-2", "other-1", "payment", 400, "EUR", datetime(2016, 2, 2, 9, tzinfo=UTC)),
            ("pay-3", "other-1", "refund", 150, "EUR", datetime(2016, 3, 1, 9, tzinfo=UTC)),
            ("pay-4", "other-3", "payment", 5000, "USD", datetime(2016, 2, 11, 9, tzinfo=UTC)),
        ],
    ),
    "feedback": (
        ("id", "client_id", "booking_id", "rating", "nps", "submitted_at"),
        [
            ("fb-1", "cl-1", "other-1", 5, 10, datetime(2016, 3, 6, 9, tzinfo=UTC)),
            ("fb-2", "cl-2", "other-2", 4, 7, datetime(2016, 3, 6, 9, tzinfo=UTC)),
            ("fb-3", "cl-2", "other-3", 2, None, datetime(2016, 3, 7, 9, tzinfo=UTC)),
        ],
    ),
    "weddings": (
        ("id", "client_id", "wedding_date", "venue_id", "guest_count"),
        [
            ("w-1", "cl-1", date(2016, 3, 5), "city-hotel", 120),
            ("w-2", "cl-2", date(2016, 3, 6), "resort-hotel", 80),
        ],
    ),
    "clients": (
        ("id", "display_name", "email", "country", "created_at"),
        [
            ("cl-1", "A", "a@example.org", "NZ", datetime(2015, 12, 1, tzinfo=UTC)),
            ("cl-2", "B", "b@example.org", "PT", datetime(2015, 12, 2, tzinfo=UTC)),
        ],
    ),
    "suppliers": (
        ("id", "name", "kind", "capacity"),
        [("s-1", "Lens", "photographer", 2), ("s-2", "Feast", "caterer", None)],
    ),
    "offices": (
        ("id", "name", "city", "opened_on"),
        [
            ("off-1", "Harbour", "Auckland", date(2012, 4, 1)),
            ("off-2", "Lakes", "Queenstown", None),
            ("off-3", "Bay", "Auckland", date(2019, 9, 30)),
        ],
    ),
    "catering_menus": (  # before the events (foreign key)
        ("id", "name", "price_per_cover_minor", "currency"),
        [
            ("m-1", "Garden", 9500, "EUR"),
            ("m-2", "Coast", 12000, "EUR"),
            ("m-3", "Gala", 15000, "USD"),
        ],
    ),
    "catering_ingredients": (
        ("id", "name", "unit", "unit_cost_minor", "currency"),
        [("in-1", "Salmon", "kg", 2400, "EUR"), ("in-2", "Wine", "l", 900, "EUR")],
    ),
    "catering_events": (
        ("id", "booking_id", "wedding_id", "menu_id", "event_date", "covers"),
        [
            ("ev-1", "other-1", "w-1", "m-1", date(2016, 3, 5), 120),
            ("ev-2", "other-2", "w-2", "m-1", date(2016, 3, 6), 80),
            ("ev-3", "other-4", None, "m-2", date(2016, 4, 2), 45),
        ],
    ),
}


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
        for table, (columns, table_rows) in OTHER_TABLES.items():
            await conn.execute(f"DELETE FROM {table} WHERE organization_id = $1", OTHER_ORG)
            await conn.copy_records_to_table(
                table,
                records=[(OTHER_ORG, *r) for r in table_rows],
                columns=("organization_id", *columns),
            )
        await conn.execute("ANALYZE bookings")
    finally:
        await conn.close()
    return AggData(settings, await asyncio.to_thread(read_csv, hotel_csv))
