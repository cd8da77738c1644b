"""Live occupancy over HTTP: capacity and a closed date from PostgreSQL, bookings and a
cancellation from the stream, compared with a count of the produced events."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import aiohttp
import asyncpg
import orjson

from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from tests.e2e.helpers import auth, send

ORG = "occupancy-live-org"
VENUE = "barn"
CAPACITY = 2
UNKNOWN_CAPACITY = "tent"
CLOSED = date(2026, 8, 3)
# (service date, kind): three on 1 Aug (one cancelled later), one on 2 Aug, two on the closed day
EVENTS = [
    (date(2026, 8, 1), "booking_created"),
    (date(2026, 8, 1), "booking_created"),
    (date(2026, 8, 1), "booking_created"),
    (date(2026, 8, 2), "booking_created"),
    (date(2026, 8, 3), "booking_created"),
    (date(2026, 8, 1), "booking_cancelled"),
]


def message(n: int, day: date, kind: str, venue: str = VENUE) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "event_id": f"occ-{n}",
            "organization_id": ORG,
            "occurred_at": "2026-02-01T10:00:00Z",
            "event_type": kind,
            "booking_id": f"b-{n}",
            "venue_id": venue,
            "service_date": day.isoformat(),
            "amount_minor": 500_000,
            "currency": "EUR",
        }
    )


def pct(occupied: int, available: int) -> str:
    return str((Decimal(occupied * 100) / available).quantize(Decimal("0.01"), ROUND_HALF_EVEN))


async def test_occupancy_follows_bookings_capacity_and_closures(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, "Occupancy", "Europe/Lisbon", "EUR"))
        await upsert_venue(conn, ORG, Venue(VENUE, "The Barn", CAPACITY))
        await upsert_venue(conn, ORG, Venue(UNKNOWN_CAPACITY, "The Tent", None))
        await conn.execute(
            "INSERT INTO venue_closures (organization_id, venue_id, closed_on) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            ORG,
            VENUE,
            CLOSED,
        )
    finally:
        await conn.close()
    key = f"{ORG}/{VENUE}".encode()
    messages = [(key, message(n, day, kind)) for n, (day, kind) in enumerate(EVENTS)]
    tent = f"{ORG}/{UNKNOWN_CAPACITY}".encode()
    messages += [
        (tent, message(100 + n, date(2026, 8, 1), "booking_created", UNKNOWN_CAPACITY))
        for n in range(2)
    ]
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, messages)
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)

    net: Counter[date] = Counter()
    for day, kind in EVENTS:
        net[day] += 1 if kind == "booking_created" else -1
    august = [date(2026, 8, 1) + timedelta(days=i) for i in range(31)]
    available = {d: 0 if d == CLOSED else CAPACITY for d in august}
    occupied = {d: min(max(net[d], 0), available[d]) for d in august}

    async def occupancy(venue: str, grain: str, start: str, end: str) -> tuple[int, Any]:
        params = {"grain": grain, "from": start, "to": end}
        url = f"/orgs/{ORG}/venues/{venue}/occupancy"
        async with s.get(url, params=params, headers=auth(settings, ORG)) as r:
            return r.status, await r.json()

    async with aiohttp.ClientSession(main_worker.url) as s:
        status, days = await occupancy(VENUE, "day", "2026-08-01", "2026-08-03")
        assert status == 200, days
        status, month = await occupancy(VENUE, "month", "2026-08", "2026-08")
        assert status == 200, month
        status, unknown = await occupancy("nowhere", "day", "2026-08-01", "2026-08-03")
        assert status == 404 and unknown["error"]["field"] == "path.venue", unknown
        # a venue without a capacity: slots and rate unknown (null), not 100 %
        status, tent = await occupancy(UNKNOWN_CAPACITY, "month", "2026-08", "2026-08")
        assert status == 200, tent
        assert (tent["capacity"], tent["capacity_known"]) == (None, False)
        assert tent["periods"] == [
            {
                "period": "2026-08",
                "available_slots": None,
                "booked": 2,
                "occupied_slots": None,
                "closed_dates": 0,
                "occupancy_rate": None,
            }
        ]
        status, bad = await occupancy(VENUE, "month", "2026-08-01", "2026-08")
        assert status == 400 and bad["error"]["field"] == "from", bad

    assert [
        (p["period"], p["available_slots"], p["occupied_slots"], p["occupancy_rate"])
        for p in days["periods"]
    ] == [
        (
            d.isoformat(),
            available[d],
            occupied[d],
            pct(occupied[d], available[d]) if available[d] else None,
        )
        for d in august[:3]
    ]
    (m,) = month["periods"]
    total_available, total_occupied = sum(available.values()), sum(occupied.values())
    assert (m["available_slots"], m["occupied_slots"], m["closed_dates"]) == (
        total_available,
        total_occupied,
        1,
    )
    assert m["occupancy_rate"] == pct(total_occupied, total_available)
