"""Benchmark: the compliance report over a large generated history, query to five files.

Generates (deterministic seed) a year of bookings of one organisation with payments, refunds,
GDPR requests and a few faults (orphan payments, payments in another currency, overpaid
bookings), loads them with ``COPY`` into a throw-away PostgreSQL, then times:

- the queries (:func:`stream_app.reports.types.compliance.load`, one tenant transaction);
- building the report (:func:`~stream_app.reports.types.compliance.build_report`);
- each renderer (CSV, JSON, Excel, PDF, PowerPoint) with its file size;
- the peak resident memory of this process.

and checks the report's per-currency totals against one plain SQL aggregate.

Usage: ``python -m loadtests.bench_compliance [--bookings 100000] [--seed 7]``. It starts its
own PostgreSQL in a temporary folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from loadtests.common import postgres_only, render_file, state_folder
from stream_app.db.history import PAYMENT_COLUMNS
from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.money import to_major
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.render import RENDERERS
from stream_app.reports.types import compliance

ORG = Organization("bench-compliance", "Bench Weddings Zürich — 東京", "Europe/Berlin", "EUR")
DATE_FROM, DATE_TO = date(2025, 1, 1), date(2025, 12, 31)
NOW = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
KINDS = ("access", "erasure", "rectification", "portability")
COLUMNS: dict[str, list[str]] = {
    "bookings": [
        "organization_id", "id", "service_date", "booked_at", "amount_minor", "currency",
        "status",
    ],
    "payments": list(PAYMENT_COLUMNS),
    "gdpr_requests": [
        "organization_id", "id", "client_id", "kind", "received_at", "completed_at", "status",
    ],
}  # fmt: skip
"""The columns of the COPY records :func:`generate` returns, per table, in its order."""


def generate(
    n: int, seed: int
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """``(bookings, payments, gdpr requests)`` as COPY records of the three tables."""
    rnd = random.Random(seed)
    org = ORG.id
    bookings: list[tuple[object, ...]] = []
    payments: list[tuple[object, ...]] = []
    requests: list[tuple[object, ...]] = []
    pid = 0

    def pay(booking: str, kind: str, amount: int, currency: str, at: datetime) -> None:
        nonlocal pid
        pid += 1
        payments.append((org, f"p{pid:08d}", booking, kind, amount, currency, at))

    for i in range(n):
        bid = f"b{i:08d}"
        service = DATE_FROM + timedelta(days=rnd.randrange(365))
        booked_at = datetime.combine(service, datetime.min.time(), UTC) - timedelta(
            days=rnd.randint(30, 400), seconds=rnd.randrange(86_400)
        )
        currency = "EUR" if rnd.random() < 0.9 else "GBP"
        amount = rnd.randint(50_000, 2_500_000)
        status = rnd.choices(["booked", "completed", "cancelled", "no_show"], [20, 64, 15, 1])[0]
        bookings.append((org, bid, service, booked_at, amount, currency, status))
        deposit = amount * 3 // 10
        first = booked_at + timedelta(days=rnd.randint(0, 10), seconds=rnd.randrange(86_400))
        pay(bid, "payment", deposit, currency, first)
        if status != "cancelled" and rnd.random() < 0.8:
            extra = rnd.randint(1, 5_000) if rnd.random() < 0.01 else 0  # a few overpay
            pay(bid, "payment", amount - deposit + extra, currency, first + timedelta(days=20))
        if status == "cancelled":
            pay(bid, "refund", deposit // 2, currency, first + timedelta(days=30))
        if rnd.random() < 0.002:
            pay(bid, "payment", 10_000, "USD", first + timedelta(days=1))
        if rnd.random() < 0.001:
            pay(f"missing-{i}", "payment", 5_000, currency, first)
    for i in range(max(1, n // 100)):
        received = datetime.combine(DATE_FROM, datetime.min.time(), UTC) + timedelta(
            seconds=rnd.randrange(365 * 86_400)
        )
        answered = rnd.random()
        completed = received + timedelta(days=rnd.randint(1, 40)) if answered < 0.9 else None
        requests.append(
            (
                org,
                f"g{i:06d}",
                f"c{i:06d}",
                rnd.choice(KINDS),
                received,
                completed,
                "completed" if completed else "received",
            )
        )
    return bookings, payments, requests


async def run(dsn: str, out_dir: Path, n: int, seed: int) -> None:
    """Load the generated history into the (migrated) database at ``dsn``; time the report;
    print."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    started = time.perf_counter()
    bookings, payments, requests = generate(n, seed)
    async with pool.acquire() as conn:
        await upsert_organization(conn, ORG)
        for (name, columns), records in zip(
            COLUMNS.items(), (bookings, payments, requests), strict=True
        ):
            await conn.copy_records_to_table(name, records=records, columns=columns)
        await conn.execute("ANALYZE")
    print(
        f"data: {len(bookings):,} bookings, {len(payments):,} payments and refunds, "
        f"{len(requests):,} GDPR requests (generated and loaded in "
        f"{time.perf_counter() - started:.1f} s)"
    )

    t0 = time.perf_counter()
    data = await compliance.load(pool, ORG, DATE_FROM, DATE_TO)
    t1 = time.perf_counter()
    table = compliance.build_report(data, ORG, DATE_FROM, DATE_TO, NOW)
    t2 = time.perf_counter()
    print(f"queries: {(t1 - t0) * 1000:,.0f} ms; building the report: {(t2 - t1) * 1000:,.0f} ms")

    store = ArtifactStore(out_dir)
    render_total = 0.0
    for fmt in RENDERERS:
        r0 = time.perf_counter()
        link = await asyncio.to_thread(render_file, store, table, fmt, "bench", "compliance")
        elapsed = time.perf_counter() - r0
        render_total += elapsed
        print(
            f"  {fmt:<10} {elapsed * 1000:>9,.0f} ms  {link.size_bytes:>13,} bytes  "
            f"{link.rows:,} main rows"
        )
    print(
        f"total (queries + build + five files): {(t2 - t0 + render_total):.2f} s; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )

    # check: booked per currency (bookings not cancelled) by plain SQL
    async with pool.acquire() as conn:
        plain = await conn.fetch(
            "SELECT currency, sum(amount_minor) AS booked FROM bookings"
            " WHERE organization_id = $1 AND service_date BETWEEN $2 AND $3"
            " AND status <> 'cancelled' GROUP BY currency ORDER BY currency",
            ORG.id,
            DATE_FROM,
            DATE_TO,
        )
    totals = next(s for s in table.sections if s.name == "payment_totals")
    reported = {str(r[0]): r[2] for r in totals.rows if r[1]}
    expected = {r["currency"].strip(): str(to_major(int(r["booked"]), r["currency"].strip()))
                for r in plain}  # fmt: skip
    verdict = "ok" if reported == expected else "MISMATCH"
    print(f"check booked per currency against plain SQL: {verdict}")
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bookings", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with state_folder("bench-compliance") as state, postgres_only(state) as dsn:
        asyncio.run(run(dsn, state / "artifacts", args.bookings, args.seed))


if __name__ == "__main__":
    main()
