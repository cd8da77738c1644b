"""A poison event (one the fold itself fails on) is dead-lettered with the error, and the rest
of its batch and partition are folded: one event costs its own count, not its partition's.

The fold's failure is injected with ``WEDDING_FAILPOINT_FOLD`` (the fold raises on the event
of that id, as a bug meeting an unforeseen input would; before this, one such event stopped
its partition's fold agent for every tenant on it). And when a fold stops the agent
(``WEDDING_FAILPOINT_FOLD_ONCE``: a failure no single event is blamed for), the partition starts
again from its committed offset, so no event is lost to a batch folded past it. Expected
totals are computed from the events sent.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.tables.limits import ROW_LIMIT
from stream_app.topics import DEAD_LETTER, PAYMENT_EVENTS, WEDDING_BOOKINGS
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, read_topic, send, venue_periods
from tests.e2e.test_crash_points import before_the_group
from tests.e2e.test_exactly_once import ENV, produce

ORG = "poison-test-org"
POISON = "poison-test-2"
REASON = b"$: the fold failed: FailpointError: failpoint: the fold fails on event 'poison-test-2'"


def booking(org: str, n: int, amount: int, day: str) -> tuple[bytes, bytes]:
    """Booking ``<org>-<n>`` of ``org``'s venue v1 (one partition), service date ``day``."""
    doc = {
        "schema_version": 1,
        "event_id": f"{org.removesuffix('-org')}-{n}",
        "organization_id": org,
        "occurred_at": f"2026-03-01T09:{n:02d}:00Z",
        "event_type": "booking_created",
        "booking_id": f"b-{n}",
        "venue_id": "v1",
        "service_date": day,
        "amount_minor": amount,
        "currency": "EUR",
    }
    return f"{org}/v1".encode(), orjson.dumps(doc)


async def worker_of(
    settings: Settings, worker_factory: WorkerFactory, group: str, org: str, **env: str
) -> WorkerProcess:
    """A worker of its own ``group`` with ``env``, ready on all four partitions; committed
    offsets above 0 from the start (as in test_crash_points: faust reads a committed 0 as
    "none", the README's known limits)."""
    await produce(settings.kafka_bootstrap, before_the_group(f"{org}-before", settings))
    worker = worker_factory.start(group, "w", **ENV, **env)
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    return worker


@pytest.mark.usefixtures("own_workers")
async def test_a_poison_event_is_dead_lettered_and_its_partition_goes_on(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    group = "wedding-poison"
    worker = await worker_of(settings, worker_factory, group, ORG, WEDDING_FAILPOINT_FOLD=POISON)
    # one batch: 8 events, the 2nd poison
    events = [booking(ORG, n, 1_000 * n, "2026-07-04") for n in range(1, 9)]
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, events)
    await wait_for_lag_zero(settings.kafka_bootstrap, group, WEDDING_BOOKINGS, 240)
    (july,) = await venue_periods(worker.url, settings, ORG, "v1", "month", "2026-07", "2026-07")
    folded = [orjson.loads(v) for _, v in events if orjson.loads(v)["event_id"] != POISON]
    assert (july["bookings"], july["revenue_minor"]) == (
        len(folded),
        {"EUR": sum(d["amount_minor"] for d in folded)},
    )

    # the same event sent again is not a re-send of a folded event: it is dead-lettered again
    # (its dedupe record was not kept), and a later event of the partition is folded
    await send(
        settings.kafka_bootstrap,
        WEDDING_BOOKINGS,
        [events[1], booking(ORG, 9, 9_000, "2026-07-04")],
    )
    await wait_for_lag_zero(settings.kafka_bootstrap, group, WEDDING_BOOKINGS, 240)
    (july,) = await venue_periods(worker.url, settings, ORG, "v1", "month", "2026-07", "2026-07")
    assert (july["bookings"], july["revenue_minor"]) == (
        len(folded) + 1,
        {"EUR": sum(d["amount_minor"] for d in folded) + 9_000},
    )
    dead = [
        r
        for r in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
        if r.value == events[1][1]
    ]
    assert len(dead) == 2
    for record in dead:
        headers = dict(record.headers)
        assert record.key == events[1][0]
        assert headers["dlq.field"] == b"$"
        assert headers["dlq.reason"] == REASON
        assert headers["dlq.source.topic"] == WEDDING_BOOKINGS.encode()


ONCE_ORG = "crash-once-org"


@pytest.mark.usefixtures("own_workers")
async def test_after_a_fold_stops_the_partition_starts_again_from_its_committed_offset(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    # the fold of the first batch holding crash-once-2 raises (no single event to blame: the
    # agent stops, faust starts it again); a later batch fetched meanwhile must not be folded
    # before it (the attacker round saw the failed batch's events come back as "redelivered"
    # to the month row the later batch had moved: month 1, days 1 + 1)
    group = "wedding-poison-once"
    worker = await worker_of(
        settings, worker_factory, group, ONCE_ORG, WEDDING_FAILPOINT_FOLD_ONCE="crash-once-2"
    )
    first = [booking(ONCE_ORG, n, 100 * n, f"2026-08-0{n}") for n in (1, 2, 3)]
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, first)
    await asyncio.sleep(2)
    await send(
        settings.kafka_bootstrap, WEDDING_BOOKINGS, [booking(ONCE_ORG, 4, 400, "2026-08-04")]
    )
    await wait_for_lag_zero(settings.kafka_bootstrap, group, WEDDING_BOOKINGS, 240)
    (august,) = await venue_periods(
        worker.url, settings, ONCE_ORG, "v1", "month", "2026-08", "2026-08"
    )
    days = await venue_periods(
        worker.url, settings, ONCE_ORG, "v1", "day", "2026-08-01", "2026-08-04"
    )
    assert (august["bookings"], august["revenue_minor"]) == (4, {"EUR": 1_000})
    assert [d["bookings"] for d in days] == [1, 1, 1, 1]
    async with aiohttp.ClientSession() as s, s.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    assert 'wedding_fold_crashes_total{topic="wedding-bookings"} 1.0' in text


OVER_ORG, NEIGHBOUR_ORG = "overflow-a-org", "overflow-b-org"
MAX_AMOUNT = 10**15
"""The largest ``amount_minor`` an event may carry (``stream_app.schemas.base.MinorUnits``)."""


def same_partition_key(key: bytes, prefix: str, partitions: int = 4) -> bytes:
    """The first ``<prefix><n>`` whose partition (Kafka's default partitioner: murmur2 of the
    key) is ``key``'s."""
    part = DefaultPartitioner()
    every = list(range(partitions))
    want = part(key, every, every)
    return next(
        candidate
        for n in range(10_000)
        if part(candidate := f"{prefix}{n}".encode(), every, every) == want
    )


def big_booking(n: int) -> tuple[bytes, bytes]:
    """Booking ``overflow-a-<n>`` of :data:`OVER_ORG`'s venue v1 of the largest amount."""
    key, value = booking(OVER_ORG, 0, MAX_AMOUNT, "2026-07-04")
    doc = {**orjson.loads(value), "event_id": f"overflow-a-{n}", "booking_id": f"b-{n}"}
    return key, orjson.dumps(doc)


def payment(org: str, n: int, amount: int) -> tuple[bytes, bytes]:
    """Payment ``<org>-p<n>`` of ``org``'s booking bk1 in March 2026 (one partition)."""
    doc = {
        "schema_version": 1,
        "event_id": f"{org.removesuffix('-org')}-p{n}",
        "organization_id": org,
        "occurred_at": "2026-03-01T10:00:00Z",
        "event_type": "payment_received",
        "payment_id": f"pay-{n}",
        "booking_id": "bk1",
        "amount_minor": amount,
        "currency": "EUR",
    }
    return f"{org}/bk1".encode(), orjson.dumps(doc)


@pytest.mark.usefixtures("own_workers")
async def test_events_that_would_take_a_total_past_64_bits_are_dead_lettered_and_the_rest_fold(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    """An attacker round's critical finding: every event valid (``amount_minor`` at most
    10^15), but 20,000 of the largest into one venue's rows took a total past 2^64, the
    changelog encoder refused the rows, and the fold agent stopped on that batch for ever:
    another tenant's events on the same partition were never folded (payments the same,
    silently). Now each event that would take a row past ROW_LIMIT (2^63 - 1) is refused by
    the fold before it changes any of its rows and dead-lettered with the row named, every row
    stops just short of the bound, and the partition goes on."""
    group = "wedding-overflow"
    worker = await worker_of(settings, worker_factory, group, OVER_ORG)
    fits = ROW_LIMIT // MAX_AMOUNT  # the largest events one total holds: 9,223
    sent = fits + 60
    neighbour_key = same_partition_key(f"{OVER_ORG}/v1".encode(), f"{NEIGHBOUR_ORG}/v")
    neighbour_venue = neighbour_key.decode().split("/")[1]

    def neighbour(n: int) -> tuple[bytes, bytes]:
        _, value = booking(NEIGHBOUR_ORG, n, 1_000 + n, "2026-07-04")
        doc = {**orjson.loads(value), "venue_id": neighbour_venue}
        return neighbour_key, orjson.dumps(doc)

    bookings = [big_booking(n) for n in range(sent)]
    # the neighbour's events before, among and after the attacker's, on its partition
    messages = [neighbour(0), *bookings[:9_000], neighbour(1), *bookings[9_000:], neighbour(2)]
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, messages)
    payments = [payment(OVER_ORG, n, MAX_AMOUNT) for n in range(sent)]
    await send(settings.kafka_bootstrap, PAYMENT_EVENTS, payments)
    await wait_for_lag_zero(settings.kafka_bootstrap, group, WEDDING_BOOKINGS, 300)
    await wait_for_lag_zero(settings.kafka_bootstrap, group, PAYMENT_EVENTS, 300)

    (july,) = await venue_periods(
        worker.url, settings, OVER_ORG, "v1", "month", "2026-07", "2026-07"
    )
    assert (july["bookings"], july["revenue_minor"]) == (fits, {"EUR": fits * MAX_AMOUNT})
    (theirs,) = await venue_periods(
        worker.url, settings, NEIGHBOUR_ORG, neighbour_venue, "month", "2026-07", "2026-07"
    )
    assert (theirs["bookings"], theirs["revenue_minor"]) == (3, {"EUR": 3_003})
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(
            f"/orgs/{OVER_ORG}/bookings/bk1/payments",
            params={"from": "2026-03", "to": "2026-03"},
            headers=auth(settings, OVER_ORG),
        ) as r,
    ):
        assert r.status == 200, await r.text()
        paid = (await r.json())["total"]
    assert (paid["payments"], paid["paid_minor"]) == (fits, {"EUR": fits * MAX_AMOUNT})

    dead = await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
    for topic, events, row in (
        (WEDDING_BOOKINGS, bookings, f"{OVER_ORG}/v1/day/2026-07-04"),
        (PAYMENT_EVENTS, payments, None),
    ):
        mine = [r for r in dead if dict(r.headers)["dlq.source.topic"] == topic.encode()]
        mine = [r for r in mine if r.key == events[0][0]]
        # exactly the events past the bound (each worker of the session reading the topic,
        # this one and other tests' groups, dead-letters its own copy of them)
        assert {r.value for r in mine} == {v for _, v in events[fits:]}
        reasons = {dict(r.headers)["dlq.reason"].decode() for r in mine}
        assert len(reasons) == 1, reasons
        (reason,) = reasons
        assert reason.startswith("$: folding it would take row '"), reason
        assert reason.endswith(
            "' past 9,223,372,036,854,775,807, the largest value a table row"
            " holds (a signed 64-bit integer)"
        ), reason
        if row is not None:
            assert f"'{row}'" in reason
    async with aiohttp.ClientSession() as s, s.get(f"{worker.url}/metrics") as r:
        text = await r.text()
    for topic in (WEDDING_BOOKINGS, PAYMENT_EVENTS):
        assert f'wedding_fold_crashes_total{{topic="{topic}"}} 0.0' in text
