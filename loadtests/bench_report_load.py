"""Benchmark: 1,000 concurrent report requests, the worker's peak memory, the cache hit ratio.

On the real hotel data set (replayed into the tables first), with its own Kafka, PostgreSQL
and one worker:

1. **load**: N concurrent requests (default 1,000), all different (date ranges, venue
   filters, format sets, priorities; ``cache_strategy=skip`` so each is generated), produced
   at once to ``report-requests``; prints the time until the last one is final, the
   completion count, reports/s, and the worker's peak RSS (``VmHWM`` of the process);
2. **cache**: N concurrent requests drawn from a pool of 100 distinct ones with Zipf-like
   popularity (dashboards asking for the same popular reports), ``use_cache``; prints the hit
   ratio (levels l1 / l2 / l3 and single-flight shares) and the generations actually run;
3. **shared levels**: the 20 most popular requests again on the restarted worker (level 2,
   the cache table restored) and on a worker of another consumer group (level 3, the stored
   artifacts found in PostgreSQL);
4. **correctness after a data change**: one more booking of the City Hotel arriving in
   2016-08 is produced; once it is folded, the popular requests covering that month are asked
   again: each must be a miss and its CSV must show the month's bookings + 1, compared with
   the figures computed straight from the CSV file (:mod:`tests.e2e.helpers`).

Usage: ``python -m loadtests.bench_report_load [path/to/hotel_bookings.csv.gz] [--requests N]``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import threading
import time
import uuid
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from loadtests.common import bench_worker, hotel_csv_main, stack
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.replay.produce import replay_hotel_bookings
from stream_app.schemas.base import decode_event, encode_event
from stream_app.schemas.reports import ReportRequest, new_report_request
from stream_app.schemas.updates import ReportStatus
from stream_app.settings import Settings
from stream_app.topics import REPORT_REQUESTS, REPORT_RESULTS, WEDDING_BOOKINGS
from stream_app.web.auth import issue_token
from tests.e2e.helpers import expected_monthly_from_csv

ORG = "hotel-demand-pt"
VENUES = ["city-hotel", "resort-hotel"]
MONTHS = [date(2015 + (6 + i) // 12, (6 + i) % 12 + 1, 1) for i in range(26)]  # 2015-07..2017-08
FORMAT_SETS: list[tuple[list[str], int]] = [
    (["csv", "json"], 60),
    (["csv"], 10),
    (["excel", "csv"], 20),
    (["pdf"], 7),
    (["powerpoint"], 3),
]
PRIORITIES: list[tuple[str, int]] = [("low", 20), ("normal", 60), ("high", 15), ("critical", 5)]


def month_end(d: date) -> date:
    nxt = date(d.year + (d.month // 12), d.month % 12 + 1, 1)
    return date.fromordinal(nxt.toordinal() - 1)


def pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def request_body(rng: random.Random) -> dict[str, Any]:
    """A random request: a range of 1–26 months, a venue filter or none, a format set."""
    a, b = sorted(rng.sample(range(len(MONTHS)), 2))
    filters = rng.choice([{}, {"venue_id": ["city-hotel"]}, {"venue_id": ["resort-hotel"]}])
    return {
        "report_type": "monthly_booking_summary",
        "date_from": MONTHS[a].isoformat(),
        "date_to": month_end(MONTHS[b]).isoformat(),
        "output_formats": pick(rng, FORMAT_SETS),
        "data_filters": filters,
    }


def as_request(body: dict[str, Any], priority: str, strategy: str) -> ReportRequest:
    return new_report_request(
        ORG,
        "bench",
        body["report_type"],
        date.fromisoformat(body["date_from"]),
        date.fromisoformat(body["date_to"]),
        list(body["output_formats"]),
        priority=priority,
        data_filters=body["data_filters"],
        cache_strategy=strategy,
    )


async def run_batch(
    s: Settings, reqs: list[ReportRequest], timeout_s: float = 1800
) -> tuple[float, dict[str, ReportStatus]]:
    """Produce every request at once; wait for each final status; ``(seconds, statuses)``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        parts = await producer.partitions_for(REPORT_RESULTS)
        tps = [TopicPartition(REPORT_RESULTS, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        wanted = {r.report_id for r in reqs}
        t0 = time.perf_counter()
        futs = [
            await producer.send(
                REPORT_REQUESTS,
                key=f"{r.organization_id}/{r.report_id}".encode(),
                value=encode_event(r),
            )
            for r in reqs
        ]
        await asyncio.gather(*futs)
        final: dict[str, ReportStatus] = {}
        deadline = time.monotonic() + timeout_s
        while len(final) < len(wanted) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    st = decode_event(rec.value or b"", ReportStatus)
                    if st.report_id in wanted and st.status in ("completed", "failed", "cancelled"):
                        final[st.report_id] = st
        return time.perf_counter() - t0, final
    finally:
        await producer.stop()
        await consumer.stop()


def peak_rss(pid: int) -> int:
    """``VmHWM`` (peak resident set size) of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def sample_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    while not stop.is_set():
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            out.extend(int(ln.split()[1]) * 1024 for ln in lines if ln.startswith("VmRSS:"))
        except OSError:
            return
        stop.wait(0.2)


async def download_csv(worker: WorkerProcess, s: Settings, st: ReportStatus) -> bytes:
    token = issue_token(s.jwt_secret, user_id="bench", organization_id=ORG, ttl_seconds=600)
    url = f"/orgs/{ORG}/reports/{st.report_id}/files/csv"
    async with (
        aiohttp.ClientSession(worker.url) as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200, await r.text()
        return await r.read()


def csv_rows(body: bytes) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {
        (r["venue_id"], r["month"]): (
            int(r["bookings"]),
            int(r["cancellations"]),
            int(r["revenue_minor"]),
        )
        for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig")))
    }


async def run(path: Path, n: int, state: Path) -> None:
    async with stack(state) as s:
        await measure(s, path, n, state)


async def measure(s: Settings, path: Path, n: int, state: Path) -> None:
    """The four parts of the module docstring on running services; print."""
    summary = await replay_hotel_bookings(s, path)
    print(f"replay: {summary.events:,} events produced")

    def new_worker(app_id: str = "bench", **env: str) -> WorkerProcess:
        return bench_worker(s, state, f"worker-{app_id}", app_id, env=env)

    worker = new_worker()
    try:
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        await wait_for_lag_zero(s.kafka_bootstrap, "bench", WEDDING_BOOKINGS, 1800, poll_s=0.5)
        rss = peak_rss(worker.process.pid) / 2**20
        print(f"fold: every event in the tables; worker peak RSS so far {rss:,.0f} MiB")
        rng = random.Random(20261129)

        # 1. load: n distinct requests at once, each generated
        stop = threading.Event()
        samples: list[int] = []
        sampler = threading.Thread(target=sample_rss, args=(worker.process.pid, stop, samples))
        sampler.start()
        reqs = [as_request(request_body(rng), pick(rng, PRIORITIES), "skip") for _ in range(n)]
        seconds, final = await run_batch(s, reqs)
        stop.set()
        sampler.join()
        outcomes = Counter(st.status for st in final.values())
        by_fmt = Counter(",".join(r.output_formats) for r in reqs)
        print(
            f"load: {n:,} concurrent requests ({dict(by_fmt)}):"
            f" {outcomes['completed']:,} completed,"
            f" {outcomes['failed']:,} failed, {n - len(final):,} missing, in {seconds:.1f} s"
            f" = {n / seconds:.1f} reports/s"
        )
        total_ms = sorted(st.performance.total_ms for st in final.values() if st.performance)
        print(
            f"load: per-report total time p50 {total_ms[len(total_ms) // 2]:,.0f} ms,"
            f" p99 {total_ms[int(len(total_ms) * 0.99)]:,.0f} ms (read from its lane -> final)"
        )
        print(
            f"load: worker peak RSS {peak_rss(worker.process.pid) / 2**20:,.0f} MiB"
            f" (VmHWM; sampled max during the batch {max(samples, default=0) / 2**20:,.0f} MiB;"
            f" target < 2,048 MiB)"
        )
        assert outcomes["completed"] == n, outcomes

        # 2. cache: n requests from a pool of 100 with Zipf-like popularity
        pool = [request_body(rng) for _ in range(100)]
        weights = [1 / (i + 1) for i in range(len(pool))]
        drawn = rng.choices(range(len(pool)), weights=weights, k=n)
        reqs = [as_request(pool[i], pick(rng, PRIORITIES), "use_cache") for i in drawn]
        seconds, final = await run_batch(s, reqs)
        levels = Counter(st.cache.level if st.cache else "none" for st in final.values())
        hits = sum(levels[lv] for lv in ("l1", "l2", "l3"))
        shared = levels["in_flight"]
        print(
            f"cache: {n:,} requests over {len(set(drawn))} distinct ones in {seconds:.1f} s;"
            f" levels {dict(levels)}"
        )
        print(
            f"cache: hit ratio {hits / n:.1%} (l1+l2+l3), {(hits + shared) / n:.1%} served"
            f" without generating (with single-flight shares); target > 85 %"
        )
        assert all(st.status == "completed" for st in final.values())

        # 4. the shared levels: the 20 most popular requests after a restart (l1 is empty, the
        # cache table is back from RocksDB: l2), then on a worker of another consumer group
        # (its own empty cache table; PostgreSQL and the artifact store are shared: l3)
        top = [as_request(pool[i], "normal", "use_cache") for i in range(20)]
        worker.stop()
        worker = new_worker()
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        _, again_a = await run_batch(s, top)
        worker.stop()
        other = new_worker("bench-other", WEDDING_OFFSET_RESET="latest")
        try:
            await other.wait_ready(timeout_s=120, min_partitions=4)
            # a new group reading from 'latest' fixes its positions at its first fetch: a
            # request produced before that is not its to read, so probe until one is answered
            for _ in range(60):
                probe = as_request(request_body(rng), "normal", "skip")
                if (await run_batch(s, [probe], timeout_s=5))[1]:
                    break
            await asyncio.sleep(2)
            top = [as_request(pool[i], "normal", "use_cache") for i in range(20)]
            _, again_b = await run_batch(s, top)
        finally:
            other.stop()
        for label, res in (("restarted worker", again_a), ("another group's worker", again_b)):
            lv = Counter(st.cache.level if st.cache else "none" for st in res.values())
            print(f"shared levels: top 20 requests on a {label}: {dict(lv)}")
        worker = new_worker()
        await worker.wait_ready(timeout_s=120, min_partitions=4)

        # 3. correctness after a data change: one more City Hotel booking in 2016-08
        expected = expected_monthly_from_csv(path)
        covering = [
            b
            for b in pool
            if b["date_from"] <= "2016-08-01"
            and b["date_to"] >= "2016-08-31"
            and b["data_filters"].get("venue_id", ["city-hotel"]) == ["city-hotel"]
        ][:5] or [
            {
                "report_type": "monthly_booking_summary",
                "date_from": "2016-08-01",
                "date_to": "2016-08-31",
                "output_formats": ["csv"],
                "data_filters": {},
            }
        ]
        covering = [
            {**b, "output_formats": sorted({*b["output_formats"], "csv"})} for b in covering
        ]
        warm = [as_request(b, "normal", "use_cache") for b in covering]
        _, before = await run_batch(s, warm)  # cached copies exist before the change
        producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            event = {
                "schema_version": 1,
                "event_id": f"bench-extra-{uuid.uuid4()}",
                "organization_id": ORG,
                "occurred_at": "2016-06-01T11:00:00+00:00",
                "event_type": "booking_created",
                "booking_id": f"bench-{uuid.uuid4().hex[:8]}",
                "venue_id": "city-hotel",
                "service_date": "2016-08-20",
                "amount_minor": 12_345,
                "currency": "EUR",
                "nights": 1,
            }
            await producer.send_and_wait(
                WEDDING_BOOKINGS, key=f"{ORG}/city-hotel".encode(), value=orjson.dumps(event)
            )
        finally:
            await producer.stop()
        await wait_for_lag_zero(s.kafka_bootstrap, "bench", WEDDING_BOOKINGS, 120, poll_s=0.2)
        await asyncio.sleep(1.0)  # the invalidation agent reads the metric update
        again = [as_request(b, "normal", "use_cache") for b in covering]
        _, after = await run_batch(s, again)
        want = expected[("city-hotel", "2016-08")]
        ok = True
        for r in again:
            st = after[r.report_id]
            rows = csv_rows(await download_csv(worker, s, st))
            got = rows[("city-hotel", "2016-08")]
            good = (
                st.cache is not None
                and st.cache.level == "miss"
                and got == (want[0] + 1, want[1], want[2] + 12_345)
            )
            ok = ok and good
        old_levels = Counter(st.cache.level if st.cache else "none" for st in before.values())
        print(
            f"after a data change: {len(again)} cached requests covering 2016-08 asked again:"
            f" all misses with the new booking counted = {ok} (before the change: "
            f"{dict(old_levels)}; City Hotel 2016-08 bookings {want[0]:,} -> {want[0] + 1:,})"
        )
        assert ok
    finally:
        worker.stop()


def main() -> None:
    hotel_csv_main(
        __doc__, "wedding-bench-load", run, count_option="--requests", count_default=1000
    )


if __name__ == "__main__":
    main()
