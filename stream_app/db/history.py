"""Bulk loading of booking history with asyncpg ``COPY``.

Bookings are copied into a temporary staging table, then inserted with ``ON CONFLICT DO
NOTHING``, so loading the same history twice leaves one copy. Payments are copied straight
into their table (:func:`copy_payments`: bulk loads of new rows, such as the benchmarks').
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass
from datetime import date, datetime

import asyncpg


@dataclass(frozen=True, slots=True)
class BookingRow:
    """One row of the ``bookings`` history table (see migration 001 for column meanings)."""

    organization_id: str
    id: str
    venue_id: str | None
    service_date: date
    nights: int
    booked_at: datetime
    amount_minor: int
    currency: str
    status: str
    cancelled_at: datetime | None
    source_event_id: str | None


_COLUMNS = (
    "organization_id",
    "id",
    "venue_id",
    "service_date",
    "nights",
    "booked_at",
    "amount_minor",
    "currency",
    "status",
    "cancelled_at",
    "source_event_id",
)


async def copy_bookings(conn: asyncpg.Connection, rows: Iterable[BookingRow]) -> int:
    """Load booking rows; return how many were new (already present ids are kept as they are).

    Raises:
        asyncpg.PostgresError: a row breaks a constraint (e.g. a negative amount); nothing of
            this call is kept.
    """
    async with conn.transaction():
        await conn.execute(
            "CREATE TEMP TABLE bookings_stage (LIKE bookings INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "bookings_stage", records=(astuple(r) for r in rows), columns=_COLUMNS
        )
        cols = ", ".join(_COLUMNS)
        status = await conn.execute(
            f"INSERT INTO bookings ({cols}) SELECT {cols} FROM bookings_stage"
            " ON CONFLICT (organization_id, id) DO NOTHING"
        )
    return int(status.split()[-1])


PAYMENT_COLUMNS = (
    "organization_id", "id", "booking_id", "kind", "amount_minor", "currency", "occurred_at",
)  # fmt: skip
"""The columns of a record given to :func:`copy_payments`, in order (migration 001)."""


async def copy_payments(conn: asyncpg.Connection, records: Iterable[tuple[object, ...]]) -> None:
    """Copy payment rows, each a tuple of :data:`PAYMENT_COLUMNS`, into ``payments``.

    Raises:
        asyncpg.PostgresError: a row breaks a constraint, e.g. an id already present (nothing
            of this call is kept).
    """
    await conn.copy_records_to_table("payments", records=records, columns=PAYMENT_COLUMNS)
