"""Two workers: reads answered by whichever worker holds the rows, and a schedule firing every
minute for several minutes runs exactly once per fire time, delivered to a real webhook."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.delivery.webhook import verify_signature
from stream_app.devservices.common import free_ports
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.queries.partitions import partition_for
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, booking_created, schedule_body, send, venue_periods

pytestmark = pytest.mark.slow
ORG = "sched-org"
GROUP = "wedding-sched-tests"
SECRET = "webhook-secret-0123456789"


def venues_on_two_partitions() -> tuple[str, str]:
    """Two venue ids whose rows live in different partitions (so two workers split them)."""
    first = "hall-0"
    p0 = partition_for(f"{ORG}/{first}".encode(), 4)
    for i in range(1, 100):
        v = f"hall-{i}"
        if partition_for(f"{ORG}/{v}".encode(), 4) != p0:
            return first, v
    raise AssertionError("no second partition found")


class Receiver:
    """A real webhook endpoint that checks every signature."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.three = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = verify_signature(
            SECRET,
            request.headers["X-Wedding-Timestamp"],
            body,
            request.headers["X-Wedding-Signature"],
        )
        if not ok:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.deliveries.append(orjson.loads(body))
        if len(self.deliveries) >= 3:
            self.three.set()
        return web.Response(status=204)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_ports(1)[0]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield rec, f"http://127.0.0.1:{port}/hook"
    await runner.cleanup()


@pytest.fixture(scope="module")
async def two_workers(
    settings: Settings, worker_factory: WorkerFactory
) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    env = {
        "WEDDING_SCHEDULER_INTERVAL_S": "2",
        "WEDDING_OFFSET_RESET": "latest",
        "WEDDING_ALLOW_PRIVATE_TARGETS": "1",  # the test's webhook receiver is on loopback
        "WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",  # ... at delivery time too
    }
    a = worker_factory.start(GROUP, "a", **env)
    b = worker_factory.start(GROUP, "b", **env)
    parts_a = await a.wait_ready(timeout_s=120)
    parts_b = await b.wait_ready(timeout_s=120)
    # each holds some partitions, together all four
    for _ in range(60):
        parts_a = await a.wait_ready()
        parts_b = await b.wait_ready()
        if sorted(parts_a + parts_b) == [0, 1, 2, 3] and parts_a and parts_b:
            break
        await asyncio.sleep(1)
    assert sorted(parts_a + parts_b) == [0, 1, 2, 3]
    try:
        yield a, b
    finally:
        # a second consumer group on the same topics would also answer every later test's
        # report requests
        a.stop()
        b.stop()


async def test_schedule_fires_once_per_minute_across_two_workers(
    settings: Settings,
    two_workers: tuple[WorkerProcess, WorkerProcess],
    receiver: tuple[Receiver, str],
) -> None:
    a, b = two_workers
    rec, url = receiver
    hall_a, hall_b = venues_on_two_partitions()
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, "Two Halls", "Europe/London", "GBP"))
        for v in (hall_a, hall_b):
            await upsert_venue(conn, ORG, Venue(v, v.title(), capacity=1))
    finally:
        await conn.close()

    today = datetime.now(UTC).date()
    bookings = [
        (hall_a, today - timedelta(days=3), 250_000),
        (hall_a, today - timedelta(days=4), 120_050),
        (hall_b, today - timedelta(days=5), 99_999),
    ]
    events = [
        booking_created(ORG, f"sched-{n}", f"sb-{n}", venue, day.isoformat(), amount, "GBP")
        for n, (venue, day, amount) in enumerate(bookings)
    ]
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, events)
    await wait_for_lag_zero(settings.kafka_bootstrap, GROUP, WEDDING_BOOKINGS, 300)

    # a read reaching the worker that does not hold the rows is answered all the same
    month = (today - timedelta(days=3)).isoformat()[:7]
    for worker in (a, b):
        lo, hi = (today - timedelta(days=4)).isoformat(), (today - timedelta(days=3)).isoformat()
        found = await venue_periods(worker.url, settings, ORG, hall_a, "day", lo, hi)
        assert [p["revenue_minor"] for p in found] == [{"GBP": 120_050}, {"GBP": 250_000}]
    assert month  # the month label of the first booking

    schedule = schedule_body(
        schedule_id="every-minute",
        date_range="last_n_days:10",
        cron="* * * * *",
        time_zone="Europe/London",
        min_interval_seconds=0,
        delivery={"method": "webhook", "url": url, "secret": SECRET},
        retry={"max_attempts": 3, "base_backoff_s": 1, "max_backoff_s": 2},
    )
    async with (
        aiohttp.ClientSession(a.url) as s,
        s.post(f"/orgs/{ORG}/schedules", json=schedule, headers=auth(settings, ORG)) as r,
    ):
        created = await r.json()
        assert r.status == 201, created
    assert len(created["upcoming_fire_times"]) == 5
    assert "secret" not in created["delivery"]

    await asyncio.wait_for(rec.three.wait(), timeout=240)
    await asyncio.sleep(5)  # let a wrongly doubled run show itself
    async with (
        aiohttp.ClientSession(b.url) as s,
        s.get(f"/orgs/{ORG}/schedules/every-minute/runs", headers=auth(settings, ORG)) as r,
    ):
        runs = await r.json()
    fire_times = [datetime.fromisoformat(x["fire_time"]) for x in runs["runs"]]
    assert len(fire_times) >= 3
    assert len(set(fire_times)) == len(fire_times)
    assert all(t.second == 0 and t.microsecond == 0 for t in fire_times)
    ordered = sorted(fire_times)
    assert all(b_ - a_ == timedelta(minutes=1) for a_, b_ in itertools.pairwise(ordered))
    claimers = {x["claimed_by"] for x in runs["runs"]}
    assert claimers  # which worker claimed is free; that each fire time ran once is the point

    assert rec.bad_signatures == 0
    ids = Counter(d["report_id"] for d in rec.deliveries)
    assert all(n == 1 for n in ids.values()), ids
    delivered_runs = [x for x in runs["runs"] if x["status"] == "delivered"]
    assert {rid for x in delivered_runs for rid in x["report_ids"]} <= set(ids)
    assert len(delivered_runs) >= 3

    # the delivered report holds the produced bookings, read across both workers' rows
    first = rec.deliveries[0]
    assert first["status"] == "completed"
    (artifact,) = first["artifacts"]
    token = artifact["download_url"].split("/downloads/")[1]
    async with aiohttp.ClientSession(a.url) as s, s.get(f"/downloads/{token}") as r:
        assert r.status == 200
        data = await r.read()
    async with aiohttp.ClientSession(a.url) as s, s.get(f"/downloads/{token}x") as r:
        assert r.status == 403
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    by_venue: Counter[str] = Counter()
    for row in rows:
        by_venue[row["venue_id"]] += int(row["revenue_minor"])
    assert by_venue == Counter({hall_a: 370_050, hall_b: 99_999})
