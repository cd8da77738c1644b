"""Benchmark: build + render the ``venue_occupancy`` report over the real hotel data.

Prints:
- build: time to read the figures from PostgreSQL and assemble the report (the SQL over
  119,389 bookings expanded to their covered dates, July 2015 – August 2017), median and max
  over ``--runs`` runs;
- render: time per output format (CSV, JSON, Excel, PDF, PowerPoint) and build + render of
  all five, median and max;
- end to end (unless ``--no-e2e``): a ``report-requests`` message → ``completed`` status read
  back, through a real worker, all five formats, median and max over ``--reports`` requests.

Usage: ``python -m loadtests.bench_occupancy [path/to/hotel_bookings.csv.gz] [--runs N]
[--reports N] [--no-e2e]``. It starts its own Kafka and PostgreSQL in a fresh state folder
(as :mod:`loadtests.bench_replay` does) and stops them, and the worker, at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import asyncpg

from loadtests.common import (
    bench_request,
    bench_worker,
    no_table_reads,
    render_file,
    stack,
    state_folder,
    timed_reports,
)
from stream_app.db.history import copy_bookings
from stream_app.db.tenancy import fetch_organization, fetch_venues
from stream_app.replay import hotel
from stream_app.replay.produce import history_rows, register_hotel_organization
from stream_app.reports import registry
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.types.base import ReportContext
from stream_app.settings import Settings

DATE_FROM, DATE_TO = date(2015, 7, 1), date(2017, 8, 31)
FORMATS = ["csv", "json", "excel", "pdf", "powerpoint"]


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values):,.0f} ms, max {max(values):,.0f} ms"


async def in_process(s: Settings, path: Path, runs: int, out_dir: Path) -> None:
    """Load the history with the replay's COPY loader, then build and render ``runs`` times."""
    conn = await asyncpg.connect(s.postgres_dsn)
    try:
        await register_hotel_organization(conn)
        rows, _ = history_rows(await asyncio.to_thread(hotel.map_file, path))
        await copy_bookings(conn, rows)
        # what autovacuum does within a minute of a bulk load (PostgreSQL docs, "Populating a
        # Database: Run ANALYZE Afterwards"); without statistics the plans are 3-4x slower
        await conn.execute("ANALYZE bookings")
        org = await fetch_organization(conn, hotel.ORGANIZATION_ID)
        venues = await fetch_venues(conn, hotel.ORGANIZATION_ID)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(s.postgres_dsn, min_size=1, max_size=2)
    store = ArtifactStore(out_dir)
    builds: list[float] = []
    totals: list[float] = []
    renders: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, int] = {}
    try:
        for _ in range(runs):
            req = bench_request(
                hotel.ORGANIZATION_ID, "venue_occupancy", DATE_FROM, DATE_TO, FORMATS
            )
            ctx = ReportContext(req, org, venues, pool, no_table_reads)
            t0 = time.perf_counter()
            table = await registry.get("venue_occupancy").build(ctx)
            t1 = time.perf_counter()
            builds.append((t1 - t0) * 1000)
            for fmt in FORMATS:
                t = time.perf_counter()
                link = render_file(store, table, fmt, req.report_id, "occ")
                renders[fmt].append((time.perf_counter() - t) * 1000)
                sizes[fmt] = link.size_bytes
            totals.append((time.perf_counter() - t0) * 1000)
    finally:
        await pool.close()
    print(
        f"venue_occupancy, hotel data {DATE_FROM}..{DATE_TO}, {len(rows):,} bookings, {runs} runs"
    )
    print(f"  build (PostgreSQL + arithmetic): {_ms(builds)}")
    for fmt in FORMATS:
        print(f"  render {fmt} ({sizes[fmt]:,} bytes): {_ms(renders[fmt])}")
    print(f"  build + render all five formats: {_ms(totals)}")


async def end_to_end(s: Settings, reports: int, state: Path) -> None:
    """Through a real worker: request → ``completed`` (history loaded; tables not needed)."""
    worker = bench_worker(s, state, "bench-worker", "bench-occupancy")
    try:
        await worker.wait_ready(timeout_s=180, min_partitions=4)
        latencies = await timed_reports(
            s,
            reports,
            organization_id=hotel.ORGANIZATION_ID,
            report_type="venue_occupancy",
            date_from=DATE_FROM,
            date_to=DATE_TO,
            output_formats=FORMATS,
        )
        latencies = [t * 1000 for t in latencies]
        print(f"  end to end, request -> completed (five formats, {reports} requests): "
              f"{_ms(latencies)}")  # fmt: skip
    finally:
        worker.stop()


async def run(path: Path, runs: int, reports: int, e2e: bool, state: Path) -> None:
    async with stack(state) as s:
        await in_process(s, path, runs, state / "bench-artifacts")
        if e2e:
            await end_to_end(s, reports, state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="../shared/data/hotel_bookings.csv.gz")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reports", type=int, default=5)
    parser.add_argument("--no-e2e", action="store_true", help="skip the worker round trip")
    args = parser.parse_args()
    with state_folder("wedding-bench-occ") as state:
        asyncio.run(run(Path(args.path), args.runs, args.reports, not args.no_e2e, state))


if __name__ == "__main__":
    main()
