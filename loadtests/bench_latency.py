"""Benchmark: produce-to-update latency of live metrics at steady rates, and the highest
sustained rate before consumer lag grows.

For each rate, a producer sends booking events at that rate for a warm-up of
:data:`WARMUP_S` seconds and then ``--seconds`` seconds, for a new organisation each rate; each
event has ``occurred_at`` = its produce time and its own venue-day row, so every
``realtime-metrics-updates`` message of grain ``day`` carries exactly one event. Latency =
time the benchmark reads the update − the event's produce time (same clock). The warm-up's
events are printed apart (the organisation's zone loaded, its first rows, a worker's first
batches: its first second is slower) and the rest is the steady state, as latency
benchmarks such as the OpenMessaging Benchmark report it.

A rate is **sustained** when the worker's lag did not grow during the run, judged two ways,
both needed: the group's committed lag is zero within 15 s of the last event (committed
offsets trail the tables by up to one commit interval, 2.8 s), and the latency did not grow
from the start to the end of the run (the median latency of the updates of the last tenth of
the events is at most twice that of the first tenth plus 50 ms; a worker slower than the
rate queues events, and their latency grows with the queue).

It prints one line per rate (updates read, p50, p99 and max latency in ms, kept up or fell
behind and why; then, from the worker's ``wedding_end_to_end_latency_seconds`` histogram, the
share of the events it announced within 5, 10, 25, 50, 100 and 250 ms of their Kafka
timestamp: the rest of the latency is the update's way to the reader), then
``highest sustained rate: R events/s`` (the highest rate of ``--rates`` that was sustained)
or that none was.

Usage: ``python -m loadtests.bench_latency [--rates 250,500,1000,2000] [--seconds 15]``.
Starts its own Kafka, PostgreSQL and one worker in a fresh state folder.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from loadtests.common import bench_worker, stack, state_folder
from stream_app.lag import consumer_lag
from stream_app.settings import Settings
from stream_app.topics import REALTIME_METRICS_UPDATES, WEDDING_BOOKINGS

GROUP = "bench-latency"

WARMUP_S = 2.0
"""Seconds each rate runs before its latencies count (a new organisation each time: its zone
is loaded, its first rows and RocksDB writes, the worker's first batches): printed apart."""


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def spread(latencies_ms: list[float]) -> str:
    """``"p50 12 ms, p99 40 ms, max 55 ms"`` of non-empty ``latencies_ms``."""
    return (
        f"p50 {statistics.median(latencies_ms):.0f} ms, "
        f"p99 {percentile(latencies_ms, 0.99):.0f} ms, max {max(latencies_ms):.0f} ms"
    )


def latency_growth(timed: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Median latency (ms) of the updates of the first and of the last tenth of the events, by
    produce time, or ``None`` with fewer than 20 updates."""
    if len(timed) < 20:
        return None
    ordered = [ms for _, ms in sorted(timed)]
    tenth = len(ordered) // 10
    return statistics.median(ordered[:tenth]), statistics.median(ordered[-tenth:])


WORKER_HISTOGRAM = "wedding_end_to_end_latency_seconds_bucket"


async def worker_buckets(url: str) -> dict[float, float]:
    """The worker's cumulative end-to-end latency buckets of ``wedding-bookings`` (Kafka
    timestamp → its updates announced): ``{upper bound s: events}``."""
    async with aiohttp.ClientSession(url) as s, s.get("/metrics") as r:
        text = await r.text()
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == WORKER_HISTOGRAM and sample.labels.get("topic") == WEDDING_BOOKINGS:
                out[float(sample.labels["le"])] = sample.value
    return out


def worker_share(before: dict[float, float], after: dict[float, float]) -> str:
    """Of the events between two readings, the share the worker announced within each
    bucket bound up to 0.25 s: ``"≤25 ms 40 %, ≤50 ms 90 %, ..."``."""
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    if total <= 0:
        return "no events"
    return ", ".join(
        f"≤{bound * 1000:.0f} ms {100 * (after[bound] - before.get(bound, 0.0)) / total:.0f} %"
        for bound in sorted(after)
        if bound <= 0.25
    )


def rates_text(rates: list[int]) -> str:
    """``[250, 1000]`` -> ``"250, 1,000"``."""
    return ", ".join(f"{r:,}" for r in rates)


async def run_rate(
    bootstrap: str,
    rate: int,
    seconds: float,
    tag: str,
    *,
    updates: str = REALTIME_METRICS_UPDATES,
    group: str = GROUP,
    warmup: float = WARMUP_S,
) -> tuple[list[tuple[float, float]], list[float], int]:
    """Send ``rate`` events/s for ``warmup`` + ``seconds`` s and read their updates from
    ``updates``.

    Returns:
        ``(produce time of the event in epoch s, latency in ms)`` per day-grain update read of
        an event sent after the warm-up; the latencies (ms) of the warm-up's events; and
        consumer group ``group``'s committed lag left 15 s after the last event.
    """
    org = f"lat-{tag}"
    consumer = AIOKafkaConsumer(
        updates,
        bootstrap_servers=bootstrap,
        group_id=f"bench-reader-{tag}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    await consumer.getmany(timeout_ms=2000)  # join and settle at the end of the topic
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    # the producer's first send looks up the topic's partitions (~100 ms) with the events'
    # timestamps already taken: the first 300 ms of events measured that, not the pipe
    await producer.partitions_for(WEDDING_BOOKINGS)
    latencies: list[tuple[float, float]] = []
    total = int(rate * (warmup + seconds))
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set() or len(latencies) < total:
            batch = await consumer.getmany(timeout_ms=500)
            now = time.time()
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    if doc.get("organization_id") != org or doc["window"]["grain"] != "day":
                        continue
                    sent = datetime.fromisoformat(doc["event_time"]).timestamp()
                    latencies.append((sent, (now - sent) * 1000))
            if done.is_set() and not batch:
                break

    reader = asyncio.create_task(read())
    start = time.perf_counter()
    measured_from = time.time() + warmup
    base = date(2030, 1, 1)
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        venue = f"v{i % 16}"
        doc = {
            "schema_version": 1,
            "event_id": f"{org}-{i}",
            "organization_id": org,
            "occurred_at": datetime.now(UTC).isoformat(),
            "event_type": "booking_created",
            "booking_id": f"b{i}",
            "venue_id": venue,
            "service_date": (base + timedelta(days=i // 16)).isoformat(),
            "amount_minor": 1000,
            "currency": "EUR",
        }
        await producer.send(WEDDING_BOOKINGS, orjson.dumps(doc), key=f"{org}/{venue}".encode())
    await producer.flush()
    # committed offsets trail the tables by up to a commit interval (2.8 s): poll until the
    # group's lag is zero, up to 15 s, and report the lag left
    lag = await consumer_lag(bootstrap, group, WEDDING_BOOKINGS)
    for _ in range(30):
        if lag == 0:
            break
        await asyncio.sleep(0.5)
        lag = await consumer_lag(bootstrap, group, WEDDING_BOOKINGS)
    done.set()
    await asyncio.wait_for(reader, timeout=60)
    await producer.stop()
    await consumer.stop()
    timed = [(sent, ms) for sent, ms in latencies if sent >= measured_from]
    warm = [ms for sent, ms in latencies if sent < measured_from]
    return timed, warm, lag


BARE_GROUP = "bench-latency-bare"
BARE_UPDATES = "bench-bare-updates"


async def measure_bare(s: Settings, rates: list[int], seconds: float) -> None:
    """Each rate in turn through the bare pipe (:mod:`loadtests.bare_pipe`, a process of its
    own, before the worker starts): the ceiling of a consume → acknowledged produce hop on
    this broker and machine; print one line per rate."""
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(BARE_UPDATES, 4, 1)])
    finally:
        await admin.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtests.bare_pipe",
        "--bootstrap",
        s.kafka_bootstrap,
        "--group",
        BARE_GROUP,
        "--to",
        BARE_UPDATES,
    )
    try:
        await asyncio.sleep(8)  # joined its group and positioned at the end of the topic
        for rate in rates:
            timed, _, _ = await run_rate(
                s.kafka_bootstrap,
                rate,
                seconds,
                f"bare-{rate}-{os.getpid()}",
                updates=BARE_UPDATES,
                group=BARE_GROUP,
            )
            lat = [ms for _, ms in timed]
            if lat:
                print(
                    f"  bare {rate:>6,} events/s: {len(lat):,} messages, {spread(lat)}"
                    " (bare aiokafka consume → acknowledged produce)",
                    flush=True,
                )
            else:
                print(f"  bare {rate:>6,} events/s: no messages read", flush=True)
            await asyncio.sleep(2)
    finally:
        proc.terminate()
        await proc.wait()


async def main_async(rates: list[int], seconds: float, state: Path, bare: bool) -> None:
    async with stack(state, partitions=4) as s:
        if bare:
            await measure_bare(s, rates, seconds)
        await measure(s, state, rates, seconds)


async def measure(s: Settings, state: Path, rates: list[int], seconds: float) -> None:
    """Each rate in turn through one worker (module docstring); print."""
    worker = bench_worker(
        s, state, "worker", GROUP, scheduling=True, env={"WEDDING_OFFSET_RESET": "latest"}
    )
    try:
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        sustained: list[int] = []
        for rate in rates:
            before = await worker_buckets(worker.url)
            timed, warm, lag = await run_rate(
                s.kafka_bootstrap, rate, seconds, f"{rate}-{os.getpid()}"
            )
            inside = worker_share(before, await worker_buckets(worker.url))
            lat = [ms for _, ms in timed]
            growth = latency_growth(timed)
            if lag != 0:
                verdict = f"FELL BEHIND (lag {lag:,} 15 s after the end)"
            elif growth is not None and growth[1] > 2 * growth[0] + 50:
                verdict = (
                    f"FELL BEHIND (latency grew: median {growth[0]:.0f} ms over the first "
                    f"tenth, {growth[1]:.0f} ms over the last)"
                )
            else:
                verdict = "kept up"
                sustained.append(rate)
            if lat:
                print(
                    f"{rate:>6,} events/s for {seconds:.0f} s: {len(lat):,} updates, "
                    f"{spread(lat)}; {verdict}\n"
                    f"        warm-up (first {WARMUP_S:.0f} s, a new organisation, not counted):"
                    f" {spread(warm) if warm else 'no updates'}\n"
                    f"        inside the worker (Kafka timestamp → batch durable, its updates sent"
                    f" before): {inside}",
                    flush=True,
                )
            else:
                print(f"{rate:>6,} events/s: no updates read; {verdict}", flush=True)
            await asyncio.sleep(2)
        if sustained:
            print(f"highest sustained rate: {max(sustained):,} events/s (of {rates_text(rates)})")
        else:
            print(f"highest sustained rate: none of {rates_text(rates)} events/s was sustained")
    finally:
        worker.stop()


def main() -> None:
    # a group's first join logs "Group Coordinator Request failed" / "Marking the coordinator
    # dead" while the broker elects the coordinator: retried by aiokafka, not a failure
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="250,500,1000,2000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--no-bare", action="store_true", help="skip the bare consume → produce ceiling"
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    with state_folder("wedding-latency") as state:
        asyncio.run(main_async(rates, args.seconds, state, not args.no_bare))


if __name__ == "__main__":
    main()
