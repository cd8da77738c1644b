"""Benchmark: peak memory of a 2,000,000-row report in every format, streamed and fetched.

Loads one organisation with ``--rows`` bookings (default 2,000,000; ``COPY`` through
:func:`stream_app.db.history.copy_bookings`) and payments for two thirds of them (``COPY``),
into a throw-away PostgreSQL. Then, for each format (CSV, JSON, Excel, PDF, PowerPoint) and
each path, a **fresh child process** builds the ``compliance`` report over the whole range
(its ``payment_reconciliation`` section has one row per booking: ``--rows`` rows) and renders
that one format, exactly as the report agent does (build on the event loop, render in a
worker thread, files written through the artifact store):

- ``stream``: the agent's path: a report session, the reconciliation read through a
  server-side cursor in batches of :data:`stream_app.reports.streaming.BATCH_ROWS` while the
  renderer writes (:mod:`stream_app.reports.streaming`);
- ``fetch`` (``--fetch FORMATS``, the code before streaming, still used when a builder gets no
  session): every booking's balance fetched into memory (``conn.fetch``) before rendering.

Each child prints its resident set size after imports and connecting (baseline) and its
high-water mark at the end (``resource.getrusage(RUSAGE_SELF).ru_maxrss``: the peak of that
process, which did nothing else). The streamed path must stay under :data:`BOUND_MIB` in
every format: PASS or FAIL is printed per format.

Usage: ``python -m loadtests.bench_report_memory [--rows 2000000] [--fetch csv,json]
[--formats csv,json,excel,pdf,powerpoint]``. It starts its own PostgreSQL in a fresh state
folder and stops it at the end (about 3 minutes to load 2,000,000 bookings on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

BOUND_MIB = 200
"""Peak RSS (MiB) a streamed report process stays under, whatever the row count (stated
from the measurements in the README: the baseline after imports is about 95 MiB)."""

ORG = "bench-memory"
FORMATS = ("csv", "json", "excel", "pdf", "powerpoint")
FIRST_DAY = date(2025, 1, 1)
DAYS = 730
BOOKED_AT = datetime(2024, 6, 1, tzinfo=UTC)


def _booking(i: int) -> tuple[str, str, date, int]:
    """(id, status, service date, amount minor) of booking ``i`` (every 10th cancelled)."""
    status = "cancelled" if i % 10 == 0 else "booked"
    return f"b{i:08d}", status, FIRST_DAY + timedelta(days=i % DAYS), 50_000 + (i * 37) % 90_000


async def load(dsn: str, rows: int) -> float:
    """Create the organisation and copy ``rows`` bookings and their payments; seconds taken."""
    from stream_app.db.history import BookingRow, copy_bookings
    from stream_app.db.tenancy import Organization, upsert_organization

    t0 = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await upsert_organization(conn, Organization(ORG, "Memory bench", "Europe/Paris", "EUR"))

        def bookings() -> Iterator[BookingRow]:
            for i in range(rows):
                bid, status, day, amount = _booking(i)
                yield BookingRow(
                    ORG, bid, None, day, 0, BOOKED_AT, amount, "EUR", status, None, None
                )

        await copy_bookings(conn, bookings())

        def payments() -> Iterator[tuple[Any, ...]]:
            for i in range(rows):
                if i % 3 == 2:
                    continue
                bid, _, _, amount = _booking(i)
                paid = amount if i % 3 == 0 else amount // 2
                yield (ORG, f"p{i:08d}", bid, "payment", paid, "EUR", BOOKED_AT)

        await conn.copy_records_to_table(
            "payments",
            records=payments(),
            columns=(
                "organization_id",
                "id",
                "booking_id",
                "kind",
                "amount_minor",
                "currency",
                "occurred_at",
            ),
        )
        await conn.execute("ANALYZE bookings; ANALYZE payments")
    finally:
        await conn.close()
    return time.perf_counter() - t0


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def child(dsn: str, fmt: str, mode: str, out_dir: Path) -> dict[str, Any]:
    """Build and render one format in this process; its figures (the parent's JSON line)."""
    from stream_app.db.tenancy import fetch_organization
    from stream_app.reports.artifacts import ArtifactStore
    from stream_app.reports.model import ReportTable
    from stream_app.reports.render import RENDERERS
    from stream_app.reports.streaming import open_session
    from stream_app.reports.types import compliance
    from stream_app.reports.types.base import ReportContext
    from stream_app.schemas.reports import new_report_request

    async def no_table_reads(*_: Any) -> dict[str, dict[str, Any]]:
        raise RuntimeError("compliance reads PostgreSQL only")

    def render(table: ReportTable) -> tuple[int, int]:
        ext, renderer = RENDERERS[fmt]
        store = ArtifactStore(out_dir)
        with store.write(ORG, "bench", f"compliance.{ext}", fmt, key=None) as (writer, out):
            renderer(table, writer)
        recon_rows = out[0].rows or 0
        return out[0].size_bytes or 0, recon_rows

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            org = await fetch_organization(conn, ORG)
        req = new_report_request(
            ORG, "bench", "compliance", FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1), [fmt]
        )
        baseline = _rss_mib()
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        if mode == "stream":
            async with open_session(pool, ORG, "compliance") as session:
                ctx = ReportContext(req, org, [], pool, no_table_reads, session)
                table = await compliance.build_at(ctx, now)
                size, _ = await asyncio.to_thread(render, table)
            recon = max(q.rows for q in session.queries)
        else:
            ctx = ReportContext(req, org, [], pool, no_table_reads)
            table = await compliance.build_at(ctx, now)
            recon = sum(1 for _ in table.sections[1].rows)
            size, _ = await asyncio.to_thread(render, table)
        seconds = time.perf_counter() - t0
    finally:
        await pool.close()
    return {
        "format": fmt,
        "mode": mode,
        "reconciliation_rows": recon,
        "bytes": size,
        "seconds": round(seconds, 1),
        "baseline_mib": round(baseline, 1),
        "peak_mib": round(_rss_mib(), 1),
    }


def run_child(dsn: str, fmt: str, mode: str, out_dir: Path) -> dict[str, Any]:
    """One fresh process for one (format, path); its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_report_memory", "--child", dsn, fmt, mode],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_OUT": str(out_dir)},
        check=False,
    )
    if done.returncode != 0:
        return {"format": fmt, "mode": mode, "error": done.stderr.strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Parse the arguments; load, then measure each format in its own process; print."""
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _, _, dsn, fmt, mode = sys.argv
        out = Path(os.environ["BENCH_OUT"]) / f"{mode}-{fmt}"
        print(json.dumps(asyncio.run(child(dsn, fmt, mode, out))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2_000_000, help="bookings = report rows")
    p.add_argument(
        "--fetch", default="", help="formats also measured on the fetch path (e.g. csv,json)"
    )
    p.add_argument("--formats", default=",".join(FORMATS))
    args = p.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    from stream_app.db.migrate import migrate
    from stream_app.devservices import postgres
    from stream_app.reports.streaming import BATCH_ROWS

    state = Path(tempfile.mkdtemp(prefix="bench-report-memory-"))
    state.chmod(0o755)  # the postgres user must reach it
    try:
        instance = postgres.start(state)
        asyncio.run(migrate(instance.dsn))
        seconds = asyncio.run(load(instance.dsn, args.rows))
        print(f"loaded {args.rows:,} bookings (+ payments for 2/3) with COPY in {seconds:.0f} s")
        print(
            f"compliance report, payment_reconciliation = {args.rows:,} rows; cursor batches of "
            f"{BATCH_ROWS:,} rows; bound for the streamed path: {BOUND_MIB} MiB peak RSS"
        )
        print(
            f"{'format':<11} {'path':<7} {'rows':>10} {'file MiB':>9} {'s':>6} "
            f"{'base MiB':>9} {'peak MiB':>9}  verdict"
        )
        failed = False
        fetched = {f for f in args.fetch.split(",") if f}
        for fmt in formats:
            for mode in ["stream", "fetch"] if fmt in fetched else ["stream"]:
                r = run_child(instance.dsn, fmt, mode, state / "out")
                if "error" in r:
                    print(f"{fmt:<11} {mode:<7} error: {r['error']}")
                    failed = True
                    continue
                verdict = ""
                if mode == "stream":
                    ok = r["peak_mib"] < BOUND_MIB
                    failed |= not ok
                    verdict = f"{'PASS' if ok else 'FAIL'} (< {BOUND_MIB} MiB)"
                print(
                    f"{fmt:<11} {mode:<7} {r['reconciliation_rows']:>10,} "
                    f"{r['bytes'] / 2**20:>9.1f} {r['seconds']:>6.1f} {r['baseline_mib']:>9.1f} "
                    f"{r['peak_mib']:>9.1f}  {verdict}",
                    flush=True,
                )
                shutil.rmtree(state / "out", ignore_errors=True)
        print("FAIL" if failed else "PASS")
    finally:
        postgres.stop(state)
        if not os.environ.get("BENCH_KEEP_STATE"):
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
