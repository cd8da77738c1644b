"""Benchmark: replay-to-table throughput and report latency on the real hotel data set.

Prints:
- produce rate of the replay (events/s into ``wedding-bookings``);
- sustained fold rate of one worker catching up on the whole topic (events/s from the moment
  it is ready until its committed offsets reach the end, i.e. every event is in the tables);
- the ceiling: a bare aiokafka consumer reading the same topic (events/s), and our ratio to it;
- report latency: time from producing a ``report-requests`` message to reading its
  ``completed`` status, over several requests (p50 and max, milliseconds).

Usage: ``python -m loadtests.bench_replay [path/to/hotel_bookings.csv.gz] [--reports N]``.
It starts its own Kafka and PostgreSQL in a fresh state folder and stops them at the end.
"""

from __future__ import annotations

import statistics
import time
from datetime import date
from pathlib import Path

from loadtests.common import bench_worker, hotel_csv_main, stack, timed_reports, topic_reader
from stream_app.lag import wait_for_lag_zero
from stream_app.replay.produce import replay_hotel_bookings
from stream_app.topics import WEDDING_BOOKINGS


async def bare_consume(bootstrap: str, topic: str, total: int) -> float:
    """Seconds a bare aiokafka consumer group takes to read ``total`` messages of ``topic``."""
    async with topic_reader(bootstrap, topic, group_id=f"bare-{time.time_ns()}") as consumer:
        seen = 0
        started = None
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.perf_counter()
            seen += sum(len(v) for v in batch.values())
        assert started is not None
        return time.perf_counter() - started


async def run(path: Path, reports: int, state: Path) -> None:
    async with stack(state) as s:
        summary = await replay_hotel_bookings(s, path)
        print(
            f"replay: produced {summary.events:,} events in {summary.seconds:.1f} s "
            f"= {summary.events / summary.seconds:,.0f} events/s"
        )
        worker = bench_worker(s, state, "bench-worker", "bench", scheduling=True)
        try:
            await worker.wait_ready(timeout_s=120, min_partitions=4)
            t0 = time.perf_counter()
            await wait_for_lag_zero(s.kafka_bootstrap, "bench", WEDDING_BOOKINGS, 1800, poll_s=0.5)
            fold_s = time.perf_counter() - t0
            rate = summary.events / fold_s
            print(
                f"fold: one worker folded {summary.events:,} events into the tables in "
                f"{fold_s:.1f} s = {rate:,.0f} events/s (sustained, catching up from offset 0)"
            )
            bare_s = await bare_consume(s.kafka_bootstrap, WEDDING_BOOKINGS, summary.events)
            bare = summary.events / bare_s
            print(
                f"ceiling: bare aiokafka consumer read them in {bare_s:.1f} s = {bare:,.0f} "
                f"events/s; ours = {rate / bare:.1%} of it"
            )
            latencies = await timed_reports(
                s,
                reports,
                organization_id="hotel-demand-pt",
                report_type="monthly_booking_summary",
                date_from=date(2015, 7, 1),
                date_to=date(2017, 8, 31),
                output_formats=["csv", "json"],
            )
            print(
                f"report request -> completed (csv+json, 52 rows, {reports} requests): "
                f"p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms"
            )
        finally:
            worker.stop()


def main() -> None:
    hotel_csv_main(__doc__, "wedding-bench", run, count_option="--reports", count_default=10)


if __name__ == "__main__":
    main()
