"""Faults the soak (loadtests/soak.py) found, each on real workers, broker and PostgreSQL:

- a full artifact store fails the report with its cause, at once, and nothing else: no file
  left, no retry, no dead letter, reads and the next report unaffected;
- a report whose worker dies in the middle is finished by another worker (the request comes
  back to the lane, the dead worker's heartbeat goes stale, the new one takes it over);
- a report recorded ``queued`` whose request never reached the router is sent round again;
- a worker whose broker is gone still stops on SIGTERM, within its shutdown deadline.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.db import reports as report_db
from stream_app.db.tenancy import (
    Organization,
    Venue,
    tenant_transaction,
    upsert_organization,
    upsert_venue,
)
from stream_app.devservices import kafka
from stream_app.devservices.workers import WorkerProcess, start_worker
from stream_app.reports.cache import cache_key
from stream_app.schemas.base import encode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.settings import Settings
from stream_app.topics import DEAD_LETTER, REPORT_RESULTS, WEDDING_BOOKINGS, ensure_topics
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, download, read_topic

pytestmark = [pytest.mark.slow, pytest.mark.recovery]
VENUES = ["hall-1", "hall-2"]
ENV = {
    "WEDDING_OFFSET_RESET": "latest",
    "WEDDING_SCHEDULING": "0",
    "WEDDING_SESSION_TIMEOUT_S": "6",
}


@pytest.fixture
def own_workers(worker_factory: WorkerFactory) -> Iterator[None]:
    """Stop the workers a test started (their own consumer group) when it ends."""
    started = len(worker_factory.workers)
    yield
    for worker in worker_factory.workers[started:]:
        worker.stop()


async def setup_org(settings: Settings, org: str, bookings: list[tuple[str, str, int]]) -> None:
    """Create ``org`` with :data:`VENUES` and produce its ``(venue, date, amount)`` bookings."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org.title(), "UTC", "EUR"))
        for v in VENUES:
            await upsert_venue(conn, org, Venue(v, v.title(), capacity=2))
    finally:
        await conn.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for n, (venue, day, amount) in enumerate(bookings):
            doc = {
                "schema_version": 1,
                "event_id": f"{org}-{n}",
                "organization_id": org,
                "occurred_at": "2026-01-01T12:00:00Z",
                "event_type": "booking_created",
                "booking_id": f"{org}-b{n}",
                "venue_id": venue,
                "service_date": day,
                "amount_minor": amount,
                "currency": "EUR",
            }
            await producer.send_and_wait(
                WEDDING_BOOKINGS, orjson.dumps(doc), key=f"{org}/{venue}".encode()
            )
    finally:
        await producer.stop()


BOOKINGS = [("hall-1", "2026-02-03", 120_000), ("hall-1", "2026-02-17", 80_050),
            ("hall-2", "2026-03-09", 99_999)]  # fmt: skip
"""(venue, service date, amount): February hall-1 two bookings 200,050; March hall-2 99,999."""


async def folded(worker: WorkerProcess, settings: Settings, org: str, n: int) -> None:
    """Wait until ``worker`` reads ``n`` bookings of ``org`` over HTTP."""
    async with aiohttp.ClientSession(worker.url) as s:
        for _ in range(240):
            total = 0
            for venue in VENUES:
                async with s.get(
                    f"/orgs/{org}/venues/{venue}/metrics",
                    params={"grain": "month", "from": "2026-01", "to": "2026-12"},
                    headers=auth(settings, org),
                ) as r:
                    if r.status != 200:
                        break
                    total += sum(p["bookings"] for p in (await r.json())["periods"])
            if total == n:
                return
            await asyncio.sleep(0.5)
    raise AssertionError(f"{n} bookings of {org} not folded")


async def post_report(worker: WorkerProcess, settings: Settings, org: str, fmts: list[str]) -> str:
    body = {
        "report_type": "monthly_booking_summary",
        "date_from": "2026-01-01",
        "date_to": "2026-03-31",
        "output_formats": fmts,
        "cache_strategy": "skip",
    }
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.post(f"/orgs/{org}/reports", json=body, headers=auth(settings, org)) as r,
    ):
        assert r.status == 202, await r.text()
        return str((await r.json())["report_id"])


async def final(worker: WorkerProcess, settings: Settings, org: str, rid: str) -> dict[str, Any]:
    """The report's status body once final (polled for up to 120 s)."""
    async with aiohttp.ClientSession(worker.url) as s:
        for _ in range(480):
            async with s.get(f"/orgs/{org}/reports/{rid}", headers=auth(settings, org)) as r:
                if r.status == 200:
                    body: dict[str, Any] = await r.json()
                    if body["status"] in ("completed", "failed", "cancelled"):
                        return body
            await asyncio.sleep(0.25)
    raise AssertionError(f"report {rid} not final")


def csv_revenue(data: bytes) -> Counter[tuple[str, str]]:
    """(venue, month) → revenue_minor of a monthly booking summary CSV."""
    out: Counter[tuple[str, str]] = Counter()
    for row in csv.DictReader(io.StringIO(data.decode("utf-8-sig"))):
        out[(row["venue_id"], row["month"])] += int(row["revenue_minor"])
    return out


EXPECTED_REVENUE = Counter({("hall-1", "2026-02"): 200_050, ("hall-2", "2026-03"): 99_999})


@pytest.mark.usefixtures("own_workers")
async def test_a_full_store_fails_the_report_with_its_cause_and_nothing_else(
    settings: Settings, worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    org = "full-store-org"
    store = tmp_path / "store"
    store.mkdir()
    limit = 200_000
    worker = worker_factory.start(
        "wedding-full-store-tests",
        "w",
        WEDDING_ARTIFACT_DIR=str(store),
        WEDDING_ARTIFACT_STORE_MAX_BYTES=str(limit),
        **ENV,
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    await setup_org(settings, org, BOOKINGS)
    await folded(worker, settings, org, 3)

    # the store has room: completed, with the right figures
    before = await final(worker, settings, org, await post_report(worker, settings, org, ["csv"]))
    assert before["status"] == "completed", before
    got = await download(worker.url, settings, org, before["artifacts"][0]["download_url"])
    assert csv_revenue(got) == EXPECTED_REVENUE

    # the store is at its limit: failed at once with the cause, nothing written, no retry
    filler = store / "filler.bin"
    used = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    with filler.open("wb") as fh:
        fh.truncate(limit - used)
    full = await post_report(worker, settings, org, ["csv", "pdf"])
    st = await final(worker, settings, org, full)
    assert st["status"] == "failed", st
    assert st["error"].startswith("artifact store full"), st["error"]
    assert "WEDDING_ARTIFACT_STORE_MAX_BYTES" in st["error"]
    assert st["attempts"] == 1, st
    assert not (store / org / full).exists() or not any((store / org / full).iterdir())
    assert not [p for p in store.rglob("*.partial-*")]
    dead = [r for r in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
            if full.encode() in (r.value or b"") or full.encode() in (r.key or b"")]  # fmt: skip
    assert dead == []
    # nothing else: reads are answered, and the next report completes once there is room
    await folded(worker, settings, org, 3)
    filler.unlink()
    after = await final(worker, settings, org, await post_report(worker, settings, org, ["csv"]))
    assert after["status"] == "completed", after
    got = await download(worker.url, settings, org, after["artifacts"][0]["download_url"])
    assert csv_revenue(got) == EXPECTED_REVENUE
    assert worker.process.poll() is None


@pytest.mark.usefixtures("own_workers")
async def test_a_report_whose_worker_dies_is_finished_by_another(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    org, group = "dying-worker-org", "wedding-dying-report-tests"
    # the first worker dies (exit 137, as SIGKILL) after writing the first of two files
    doomed = worker_factory.start(group, "doomed", WEDDING_FAILPOINT="report_rendered:1", **ENV)
    await doomed.wait_ready(timeout_s=120, min_partitions=4)
    await setup_org(settings, org, BOOKINGS)
    await folded(doomed, settings, org, 3)
    rid = await post_report(doomed, settings, org, ["csv", "json"])
    for _ in range(240):
        if doomed.process.poll() is not None:
            break
        await asyncio.sleep(0.25)
    assert doomed.process.returncode == 137
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        row = await conn.fetchrow("SELECT status, attempts FROM reports WHERE id = $1", rid)
    finally:
        await conn.close()
    assert (row["status"], row["attempts"]) == ("processing", 1)

    t0 = time.monotonic()
    rescuer = worker_factory.start(group, "rescuer", **ENV)
    await rescuer.wait_ready(timeout_s=120, min_partitions=4)
    st = await final(rescuer, settings, org, rid)
    took = time.monotonic() - t0
    assert st["status"] == "completed", st
    assert st["attempts"] == 2, st
    assert sorted(a["format"] for a in st["artifacts"]) == ["csv", "json"]
    csv_link = next(a["download_url"] for a in st["artifacts"] if a["format"] == "csv")
    assert csv_revenue(await download(rescuer.url, settings, org, csv_link)) == EXPECTED_REVENUE
    statuses = [
        orjson.loads(r.value)["status"]
        for r in await read_topic(settings.kafka_bootstrap, REPORT_RESULTS)
        if r.key == f"{org}/{rid}".encode()
    ]
    assert statuses.count("completed") == 1 and statuses[-1] == "completed", statuses
    print(f"report finished by the second worker {took:.1f} s after it started")


async def test_a_worker_whose_broker_is_gone_stops_on_sigterm(
    settings: Settings, state_dir: Path
) -> None:
    """A broker of its own (the session's must stay up): started, the worker ready on it,
    the broker stopped, then SIGTERM: the worker exits within its shutdown deadline."""
    home = state_dir / "lonely-broker"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    broker = await asyncio.to_thread(kafka.start, home)
    worker: WorkerProcess | None = None
    try:
        await ensure_topics(broker.bootstrap, settings.topic_partitions)
        worker = start_worker(
            kafka_bootstrap=broker.bootstrap,
            postgres_dsn=settings.postgres_dsn,
            data_dir=home / "worker",
            log_path=home / "worker.log",
            artifact_dir=settings.artifact_dir,
            app_id="wedding-lonely",
            dev_mode=True,
            extra_env={"WEDDING_SCHEDULING": "0", "WEDDING_SHUTDOWN_TIMEOUT_S": "10"},
        )
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        await asyncio.to_thread(kafka.stop, broker.pid)
        await asyncio.sleep(3)  # the worker notices: its connections are refused
        t0 = time.monotonic()
        code = await asyncio.to_thread(worker.stop, 40.0)  # SIGTERM; SIGKILL after 40 s
        took = time.monotonic() - t0
        assert code != -9, f"needed SIGKILL after {took:.1f} s"
        assert took < 15, took
        print(f"stopped {took:.1f} s after SIGTERM without its broker, exit {code}")
    finally:
        if worker is not None:
            worker.kill()
        await asyncio.to_thread(kafka.stop, broker.pid)


@pytest.mark.usefixtures("own_workers")
async def test_a_report_recorded_but_never_routed_is_sent_round_and_completed(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    """The HTTP API recorded a request ``queued`` and the broker went away before the request
    was produced: the row is all there is. The sweeper (stream_app/reports/recovery.py) sends
    the stored request to its lane once it has been queued 30 s; it completes once."""
    org, group = "never-routed-org", "wedding-never-routed-tests"
    worker = worker_factory.start(group, "w", **ENV)
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    await setup_org(settings, org, BOOKINGS)
    await folded(worker, settings, org, 3)
    req = ReportRequest(
        schema_version=1,
        report_id="never-routed-1",
        organization_id=org,
        user_id="tester",
        report_type="monthly_booking_summary",
        date_from=date(2026, 1, 1),
        date_to=date(2026, 3, 31),
        output_formats=["csv"],
        requested_at=datetime.now(UTC),
        cache_strategy="skip",
    )
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        async with tenant_transaction(conn, org):
            assert await report_db.insert_queued(
                conn,
                report_id=req.report_id,
                organization_id=org,
                user_id=req.user_id,
                report_type=req.report_type,
                request=orjson.loads(encode_event(req)),
                cache_strategy=req.cache_strategy,
                cache_key=cache_key(req),
            )
            # recorded 40 s ago: past QUEUED_STALE_S, so the next sweep (≤ 10 s) takes it
            await conn.execute(
                "UPDATE reports SET updated_at = now() - interval '40 seconds',"
                " created_at = now() - interval '40 seconds' WHERE id = $1",
                req.report_id,
            )
    finally:
        await conn.close()
    t0 = time.monotonic()
    st = await final(worker, settings, org, req.report_id)
    assert st["status"] == "completed", st
    assert time.monotonic() - t0 < 60
    assert st["attempts"] == 1, st
    got = await download(worker.url, settings, org, st["artifacts"][0]["download_url"])
    assert csv_revenue(got) == EXPECTED_REVENUE
    statuses = [
        orjson.loads(r.value)["status"]
        for r in await read_topic(settings.kafka_bootstrap, REPORT_RESULTS)
        if r.key == f"{org}/{req.report_id}".encode()
    ]
    assert statuses == ["processing", "completed"], statuses
