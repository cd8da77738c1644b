"""Benchmark: N booking events (default 1,000,000) through the bookings agent into the tables.

Produces ``N`` synthetic, valid ``booking_created`` / ``booking_cancelled`` events (8
organisations × 50 venues, service dates over one year, event times in order) to
``wedding-bookings``, then starts one worker and prints:

- the time from the worker being ready until its committed offsets reach the end of the topic
  (every event folded into the service-date totals and the event-time windows), as events/s;
- the worker's peak resident memory (RSS of the worker process, sampled every 0.5 s);
- the ceiling: a bare aiokafka consumer reading the same topic, and our ratio to it;
- a correctness check: bookings per organisation read over HTTP equal the produced counts.

Targets (issue 3): 1,000,000 events in under 30 s (33,000 events/s) in under 2 GB.

Usage: ``python -m loadtests.bench_million [--events N]``. It starts its own Kafka and
PostgreSQL in a fresh state folder and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import psutil
from aiokafka import AIOKafkaProducer

from loadtests.bench_replay import bare_consume
from stream_app.db.migrate import migrate
from stream_app.devservices import manager
from stream_app.devservices.workers import WorkerProcess, start_worker
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS, ensure_topics
from stream_app.web.auth import issue_token

ORGS = [f"bench-org-{i}" for i in range(8)]
VENUES = [f"venue-{i:02d}" for i in range(50)]


def events(n: int) -> tuple[list[tuple[bytes, bytes]], Counter[str]]:
    """``n`` events (every tenth booking is later cancelled) and bookings per organisation."""
    out: list[tuple[bytes, bytes]] = []
    bookings: Counter[str] = Counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    i = 0
    while len(out) < n:
        org, venue = ORGS[i % len(ORGS)], VENUES[(i // len(ORGS)) % len(VENUES)]
        at = start + timedelta(seconds=i)
        doc = {
            "schema_version": 1,
            "event_id": f"m-{i}",
            "organization_id": org,
            "occurred_at": at.isoformat().replace("+00:00", "Z"),
            "event_type": "booking_created",
            "booking_id": f"b-{i}",
            "venue_id": venue,
            "service_date": (date(2027, 1, 1) + timedelta(days=i % 365)).isoformat(),
            "amount_minor": 100_000 + i % 9_000,
            "currency": "EUR",
        }
        key = f"{org}/{venue}".encode()
        out.append((key, orjson.dumps(doc)))
        bookings[org] += 1
        if i % 10 == 0 and len(out) < n:
            cancel = {**doc, "event_id": f"m-{i}-c", "event_type": "booking_cancelled"}
            out.append((key, orjson.dumps(cancel)))
        i += 1
    return out, bookings


async def produce(bootstrap: str, messages: list[tuple[bytes, bytes]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    t = time.perf_counter()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(WEDDING_BOOKINGS, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - t


async def sample_rss(pid: int, stop: asyncio.Event) -> int:
    """Peak RSS in bytes of process ``pid`` until ``stop`` is set."""
    proc = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        await asyncio.sleep(0.5)
    return peak


async def bookings_over_http(worker: WorkerProcess, s: Settings, org: str) -> int:
    token = issue_token(s.jwt_secret, user_id="bench", organization_id=org, ttl_seconds=600)
    total = 0
    async with aiohttp.ClientSession(worker.url) as session:
        for venue in VENUES:
            async with session.get(
                f"/orgs/{org}/venues/{venue}/metrics",
                params={"grain": "month", "from": "2027-01", "to": "2027-12"},
                headers={"Authorization": f"Bearer {token}"},
            ) as r:
                body = await r.json()
                assert r.status == 200, body
            total += sum(p["bookings"] for p in body["periods"])
    return total


async def run(n: int, state: Path) -> None:
    services = manager.up(state)
    s = Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        postgres_dsn=services.postgres_dsn,
        artifact_dir=state / "artifacts",
        data_dir=state / "worker-data",
    )
    await ensure_topics(s.kafka_bootstrap, s.topic_partitions)
    await migrate(s.postgres_dsn)
    messages, bookings = events(n)
    produce_s = await produce(s.kafka_bootstrap, messages)
    print(f"produce: {len(messages):,} events in {produce_s:.1f} s")
    worker = start_worker(
        dev_mode=True,
        unlimited_rates=True,
        kafka_bootstrap=s.kafka_bootstrap,
        postgres_dsn=s.postgres_dsn,
        data_dir=state / "bench-worker",
        log_path=state / "bench-worker.log",
        artifact_dir=s.artifact_dir,
        app_id="bench-million",
        extra_env={"WEDDING_SCHEDULING": "0"},
    )
    stop = asyncio.Event()
    rss = asyncio.create_task(sample_rss(worker.process.pid, stop))
    try:
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        t0 = time.perf_counter()
        await wait_for_lag_zero(s.kafka_bootstrap, "bench-million", WEDDING_BOOKINGS, 7200, 1.0)
        fold_s = time.perf_counter() - t0
        stop.set()
        peak = await rss
        rate = len(messages) / fold_s
        print(
            f"fold: {len(messages):,} events into the tables in {fold_s:.1f} s = "
            f"{rate:,.0f} events/s (target: 1,000,000 in < 30 s = 33,000 events/s)"
        )
        print(f"worker peak RSS: {peak / 2**20:,.0f} MiB (target < 2,048 MiB)")
        bare_s = await bare_consume(s.kafka_bootstrap, WEDDING_BOOKINGS, len(messages))
        bare = len(messages) / bare_s
        print(f"ceiling: bare aiokafka {bare:,.0f} events/s; ours = {rate / bare:.1%} of it")
        for org in ORGS[:2]:
            got = await bookings_over_http(worker, s, org)
            assert got == bookings[org], (org, got, bookings[org])
        print(f"check: bookings of {ORGS[0]} and {ORGS[1]} over HTTP equal the produced counts")
    finally:
        stop.set()
        worker.stop()
        manager.down(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    state = Path(tempfile.gettempdir()) / f"wedding-bench-{os.getpid()}"
    state.mkdir(mode=0o755)
    try:
        asyncio.run(run(args.events, state))
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
