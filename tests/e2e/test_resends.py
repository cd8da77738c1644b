"""Events re-sent at new offsets through a real worker: within the dedupe horizon they change
nothing; after it they are counted again and counted in
``wedding_dedupe_expired_resends_total``. Kafka timestamps set by the producer stand for the
arrival times (the horizon is measured between them)."""

from __future__ import annotations

import re
import time

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.queries.partitions import partition_for
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from tests.e2e.helpers import booking_created, venue_periods

ORG = "resend-test-org"
KEY = f"{ORG}/hall".encode()
DAY_MS = 86_400_000
HORIZON_DAYS = 30  # the worker's default WEDDING_DEDUPE_HORIZON_S


def booking(n: int, amount: int) -> bytes:
    _, value = booking_created(
        ORG, f"resend-{n}", f"b-{n}", "hall", "2026-09-12", amount, "EUR", "2026-03-01T10:00:00Z"
    )
    return value


async def metric(base_url: str, series: str) -> float:
    """The value of one series of the worker's ``/metrics`` (0 when absent)."""
    async with aiohttp.ClientSession(base_url) as s, s.get("/metrics") as r:
        text = await r.text()
    m = re.search(re.escape(series) + r" (\S+)", text)
    return float(m.group(1)) if m else 0.0


EXPIRED = 'wedding_dedupe_expired_resends_total{topic="wedding-bookings"}'
DUPLICATES = 'wedding_events_outcome_total{outcome="duplicate",topic="wedding-bookings"}'


async def september(base: str, settings: Settings) -> tuple[int, int]:
    (p,) = await venue_periods(base, settings, ORG, "hall", "month", "2026-09", "2026-09")
    return int(p["bookings"]), int(p["revenue_minor"].get("EUR", 0))


async def test_resends_within_and_after_the_horizon(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    now = int(time.time() * 1000)
    old = now - (HORIZON_DAYS + 5) * DAY_MS  # arrived 35 days ago
    recent = now - 2 * DAY_MS
    sends = [
        (booking(1, 100), old),  # first sight, 35 days ago
        (booking(2, 200), recent),  # first sight, 2 days ago
        (booking(2, 200), now),  # re-send after 2 days: skipped
        (booking(1, 100), now),  # re-send after 35 days: past the horizon, counted again
        (booking(1, 100), now),  # and its re-send right after: skipped
    ]
    # the session's worker first folds what earlier tests sent (their re-sends count as
    # duplicates here too: read the counters once it has)
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    expired_before = await metric(main_worker.url, EXPIRED)
    duplicates_before = await metric(main_worker.url, DUPLICATES)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value, ts in sends:
            await producer.send_and_wait(WEDDING_BOOKINGS, value, key=KEY, timestamp_ms=ts)
    finally:
        await producer.stop()
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    # independently: event 1 counted twice (its re-send came after the horizon), event 2 once
    assert await september(main_worker.url, settings) == (3, 100 + 200 + 100)
    assert await metric(main_worker.url, EXPIRED) == expired_before + 1
    assert await metric(main_worker.url, DUPLICATES) == duplicates_before + 2


async def test_two_tenants_may_use_the_same_event_id(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    """Event ids are unique within a tenant only: another tenant's event with the same id, in
    the same partition, is its own event (not a re-send of the first tenant's)."""
    other = "resend-other-org"
    venue = next(
        v
        for v in (f"hall-{i}" for i in range(1000))
        if partition_for(f"{other}/{v}".encode(), settings.topic_partitions)
        == partition_for(KEY, settings.topic_partitions)
    )
    shared_id = "shared-event-id-1"
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for org, key, v, amount in ((ORG, KEY, "hall", 700), (other, None, venue, 900)):
            doc = orjson.loads(booking(0, amount))
            doc.update(
                organization_id=org, venue_id=v, event_id=shared_id, service_date="2026-10-03"
            )
            await producer.send_and_wait(
                WEDDING_BOOKINGS, orjson.dumps(doc), key=key or f"{org}/{v}".encode()
            )
    finally:
        await producer.stop()
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    for org, v, amount in ((ORG, "hall", 700), (other, venue, 900)):
        (p,) = await venue_periods(main_worker.url, settings, org, v, "month", "2026-10", "2026-10")
        assert (p["bookings"], p["revenue_minor"]) == (1, {"EUR": amount}), (org, p)
