"""The ``replay`` job: produce a data set's events to Kafka and load its history.

Registers the organisation and its venues in PostgreSQL, produces every mapped event to
``wedding-bookings`` in event-time order (keys ``organization_id/venue_id``), and bulk-loads
the bookings into the ``bookings`` history table with ``COPY``. Running it twice produces the
same event ids again; the agents recognise them and the totals do not change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.migrate import migrate
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.replay import hotel
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS, ensure_topics


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """What a replay did.

    Attributes:
        events: events produced (bookings + cancellations).
        bookings / cancellations: of which of each type.
        history_rows_new: history rows inserted (0 when the history was already loaded).
        history_rows_skipped: rows not loaded because they break the history's constraints
            (their events are dead-lettered by the agent with the reason).
        seconds: wall time of the produce step.
    """

    events: int
    bookings: int
    cancellations: int
    history_rows_new: int
    history_rows_skipped: int
    seconds: float


async def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterable[tuple[bytes, bytes]],
    chunk: int = 20_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Produce ``(key, value)`` pairs to ``topic``, waiting for every acknowledgement.

    Uses an idempotent producer (``acks=all``), so a retried batch is not written twice.
    ``progress``, when given, is called with the number of messages acknowledged so far: 0
    once connected, then after every ``chunk`` messages and at the end.

    Returns:
        The number of messages acknowledged.

    Raises:
        aiokafka.errors.KafkaError: a message could not be written.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=10,
        max_batch_size=512 * 1024,
        compression_type=None,
    )
    sent = 0
    try:
        # inside the try: a broker that cannot be reached fails start(), and stop() then
        # closes what start() opened (otherwise aiokafka warns of an unclosed producer)
        await producer.start()
        if progress is not None:
            progress(0)
        pending: list[asyncio.Future[object]] = []
        for key, value in events:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= chunk:
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
                if progress is not None:
                    progress(sent)
        await producer.flush()
        await asyncio.gather(*pending)
        sent += len(pending)
        if progress is not None:
            progress(sent)
    finally:
        await producer.stop()
    return sent


def history_rows(events: Sequence[hotel.MappedEvent]) -> tuple[list[BookingRow], int]:
    """Booking history rows from mapped events, and the count of rows that cannot be stored."""
    cancelled_at: dict[str, datetime] = {}
    for e in events:
        if e.payload["event_type"] == "booking_cancelled":
            cancelled_at[str(e.payload["booking_id"])] = e.occurred_at
    rows: list[BookingRow] = []
    skipped = 0
    for e in events:
        p = e.payload
        if p["event_type"] != "booking_created":
            continue
        amount = int(str(p["amount_minor"]))
        if amount < 0:
            skipped += 1
            continue
        booking_id = str(p["booking_id"])
        cancelled = cancelled_at.get(booking_id)
        rows.append(
            BookingRow(
                organization_id=str(p["organization_id"]),
                id=booking_id,
                venue_id=str(p["venue_id"]),
                service_date=datetime.fromisoformat(str(p["service_date"])).date(),
                nights=int(str(p["nights"])),
                booked_at=e.occurred_at,
                amount_minor=amount,
                currency=str(p["currency"]),
                status="cancelled" if cancelled else "booked",
                cancelled_at=cancelled,
                source_event_id=str(p["event_id"]),
            )
        )
    return rows, skipped


async def register_hotel_organization(conn: asyncpg.Connection) -> None:
    """Create (or update) the hotel data set's organisation and its two venues."""
    await upsert_organization(
        conn,
        Organization(
            hotel.ORGANIZATION_ID, hotel.ORGANIZATION_NAME, hotel.TIME_ZONE, hotel.CURRENCY
        ),
    )
    for venue_id, name in hotel.VENUES.values():
        await upsert_venue(conn, hotel.ORGANIZATION_ID, Venue(venue_id, name, capacity=None))


async def replay_hotel_bookings(
    settings: Settings,
    path: Path,
    *,
    source: str | None = None,
    load_history: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Replay the hotel booking CSV at ``path`` (see :mod:`stream_app.replay.hotel`).

    ``progress``, when given, is called with ``(events acknowledged, events to produce)``
    while the events are produced (:func:`produce_events`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        hotel.SourceRowError: a row cannot be mapped.
        aiokafka.errors.KafkaError / asyncpg.PostgresError: a service failed.
    """
    if not await asyncio.to_thread(path.is_file):
        raise FileNotFoundError(f"path: {path} is not a file")
    # errors of the file itself surface before anything is written anywhere
    events = await asyncio.to_thread(hotel.map_file, path, source)
    await migrate(settings.postgres_owner_dsn)
    await ensure_topics(settings.kafka_bootstrap, settings.topic_partitions)
    # history loads are the operator's work: the owner login (COPY is refused under RLS)
    conn = await asyncpg.connect(settings.postgres_owner_dsn)
    try:
        await register_hotel_organization(conn)
        new_rows = skipped = 0
        if load_history:
            rows, skipped = history_rows(events)
            new_rows = await copy_bookings(conn, rows)
    finally:
        await conn.close()
    started = time.perf_counter()
    sent = await produce_events(
        settings.kafka_bootstrap,
        WEDDING_BOOKINGS,
        ((e.key, orjson.dumps(e.payload)) for e in events),
        progress=None if progress is None else lambda sent: progress(sent, len(events)),
    )
    seconds = time.perf_counter() - started
    created = sum(1 for e in events if e.payload["event_type"] == "booking_created")
    return ReplaySummary(sent, created, sent - created, new_rows, skipped, seconds)
