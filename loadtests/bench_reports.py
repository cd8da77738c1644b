"""Benchmark: the photography business report on generated chains of 10,000 and 100,000 weddings.

For each size it prints:
- the load: rows generated and copied into PostgreSQL (``COPY``), seconds and rows/s;
- end to end in-process: building ``photography_business`` for the last full calendar year
  (SQL in PostgreSQL + assembling the table) and rendering it in all five formats (CSV,
  JSON, Excel, PDF, PowerPoint), seconds (median of ``--repeat`` runs; targets: under 3 s
  for the standard 10,000-wedding set, under 10 s for 100,000);
- unless ``--no-worker``: the full path through a worker: a request posted on
  ``report-requests`` with :mod:`stream_app.client`, until its ``completed`` status is read
  (all five formats), median of ``--repeat`` requests.

Usage: ``python -m loadtests.bench_reports [--sizes 10000,100000] [--repeat 3] [--no-worker]``.
It starts its own Kafka and PostgreSQL in a fresh state folder and stops them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from datetime import date
from pathlib import Path

import asyncpg

from loadtests import common
from stream_app.db.tenancy import fetch_organization
from stream_app.reports import registry
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.model import ReportTable
from stream_app.reports.types.base import ReportContext
from stream_app.schemas.reports import OUTPUT_FORMATS
from stream_app.schemas.updates import ArtifactLink
from stream_app.settings import Settings
from stream_app.synthetic.generator import SynthConfig
from stream_app.synthetic.load import load_synthetic

FORMATS = sorted(OUTPUT_FORMATS)
YEAR_FROM, YEAR_TO = date(2024, 1, 1), date(2024, 12, 31)


def _render_all(table: ReportTable, store: ArtifactStore, report_id: str) -> list[ArtifactLink]:
    return [common.render_file(store, table, fmt, report_id, "report") for fmt in FORMATS]


async def build_and_render(
    pool: asyncpg.Pool, org_id: str, store: ArtifactStore
) -> tuple[float, float, list[ArtifactLink]]:
    """(build seconds, render seconds, artifacts) of one in-process report."""
    req = common.bench_request(org_id, "photography_business", YEAR_FROM, YEAR_TO, FORMATS)
    t0 = time.perf_counter()
    async with pool.acquire() as conn:
        org = await fetch_organization(conn, org_id)
    ctx = ReportContext(req, org, [], pool, common.no_table_reads)
    table = await registry.get("photography_business").build(ctx)
    t1 = time.perf_counter()
    links = await asyncio.to_thread(_render_all, table, store, req.report_id)
    return t1 - t0, time.perf_counter() - t1, links


async def run(sizes: list[int], repeat: int, worker: bool, state: Path) -> None:
    """The benchmark on fresh services in ``state`` (:func:`loadtests.common.stack`)."""
    async with common.stack(state) as s:
        await measure(s, sizes, repeat, worker, state)


async def measure(s: Settings, sizes: list[int], repeat: int, worker: bool, state: Path) -> None:
    """Load each size, build and render in-process, then (``worker``) through a worker."""
    store = ArtifactStore(state / "bench-artifacts")
    pool = await asyncpg.create_pool(s.postgres_dsn, min_size=1, max_size=4)
    orgs: dict[int, str] = {}
    try:
        for size in sizes:
            config = SynthConfig("photography", size, seed=2026, organization_id=f"bench-{size}")
            conn = await asyncpg.connect(s.postgres_dsn)
            try:
                summary = await load_synthetic(conn, config, replace=True)
            finally:
                await conn.close()
            rows = sum(summary.rows.values())
            print(
                f"load {size:,} weddings: {rows:,} rows in {summary.seconds:.1f} s "
                f"= {rows / summary.seconds:,.0f} rows/s"
            )
            orgs[size] = config.organization_id or ""
            builds, renders, totals = [], [], []
            for _ in range(repeat):
                b, r, links = await build_and_render(pool, orgs[size], store)
                builds.append(b)
                renders.append(r)
                totals.append(b + r)
            sizes_kb = ", ".join(f"{a.format} {a.size_bytes / 1024:,.0f} KiB" for a in links)
            print(
                f"  photography_business {YEAR_FROM}..{YEAR_TO}, all 5 formats, in-process: "
                f"median {statistics.median(totals):.2f} s (build {statistics.median(builds):.2f}"
                f" s + render {statistics.median(renders):.2f} s; {links[0].rows:,} main rows; "
                f"{sizes_kb})"
            )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak memory of this process: {peak:,.0f} MiB")
        if not worker:
            return
        proc = common.bench_worker(s, state, "bench-worker", "bench-reports")
        try:
            await proc.wait_ready(timeout_s=120, min_partitions=4)
            for size in sizes:
                latencies = await common.timed_reports(
                    s,
                    repeat,
                    organization_id=orgs[size],
                    report_type="photography_business",
                    date_from=YEAR_FROM,
                    date_to=YEAR_TO,
                    output_formats=FORMATS,
                    timeout_s=300,
                )
                print(
                    f"  through a worker ({size:,} weddings): request -> completed, all 5 "
                    f"formats: median {statistics.median(latencies):.2f} s, "
                    f"max {max(latencies):.2f} s"
                )
        finally:
            proc.stop()
    finally:
        await pool.close()


def main() -> None:
    """Parse the arguments, run the benchmark in a temporary state folder, clean up."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000", help="weddings per data set, comma-separated")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-worker", action="store_true", help="skip the path through a worker")
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    keep = bool(os.environ.get("BENCH_KEEP_STATE"))
    with common.state_folder("bench-reports", keep=keep) as state:
        asyncio.run(run(sizes, args.repeat, not args.no_worker, state))


if __name__ == "__main__":
    main()
