"""Benchmark: one aggregation over 1,000,000 booking rows, ours next to the same SQL run bare.

Loads ``--rows`` synthetic booking rows (default 1,000,000; deterministic: ``random.Random``
with ``--seed``) of one organisation with COPY (:func:`stream_app.db.history.copy_bookings`),
then times a representative aggregation (every row; per venue and service month, with the
currency added automatically: count, sum, average and 90th percentile of the amount,
distinct clients) several ways, in ``--repeat`` interleaved rounds after one warm-up each
(every round runs every way once, in rotating order, so load from other processes on a shared
machine falls on all of them alike):

- the Python API (:func:`stream_app.aggregation.aggregate`: organisation lookup, compile,
  tenant transaction with RLS, statement timeout, result shaping);
- HTTP (``POST /orgs/{org}/aggregations`` on a real worker: token check, JSON both ways);
- bare: the same compiled SQL and parameters with ``asyncpg`` ``fetch`` as the superuser
  (no RLS, no shaping), once with the server's default planner settings and once with the
  engine's ``enable_indexscan = off`` (see :data:`stream_app.aggregation.engine.PLAIN_INDEX_SCANS`):
  the floor the ratios are taken against;

and prints the medians and the ratios to bare. Target: under 2 s.

Then the rollup part (issue 10): an additive request (:data:`ROLLUP_REQUEST`: per venue and
service month, count, sum and average of the amount; percentiles and distinct counts cannot
be rolled up) is given to the query optimiser (:func:`stream_app.aggregation.optimizer.optimize`,
printed), the rollup it proposes is created
(:func:`~stream_app.aggregation.rollup_store.create_rollup`), and three ways are timed in
interleaved rounds: the bare SQL (the compiled base statement, ``asyncpg`` ``fetch``), the
unoptimised path (the Python API with ``use_rollups=False``) and
the optimised path (the Python API answering from the rollup). Each prints the SHA-256 of its
result rows, which must be identical. Target: the rollup path's median under 100 ms.

Usage: ``python -m loadtests.bench_aggregation [--rows N] [--repeat N] [--no-http]
[--rollup-only]``. It starts its own Kafka and PostgreSQL in a fresh state folder and stops
them at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from loadtests.common import add_organization, bench_worker, stack, state_folder
from stream_app.aggregation import aggregate, compile_request, request_from_dict
from stream_app.aggregation.engine import shape_result
from stream_app.aggregation.optimizer import checksum, optimize
from stream_app.aggregation.rollup_store import create_rollup
from stream_app.aggregation.rollups import definition_from_dict
from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.tenancy import Organization, Venue
from stream_app.settings import Settings
from stream_app.topics import ensure_topics
from stream_app.web.auth import issue_token

ORG = Organization("bench-aggregation", "Aggregation benchmark", "Europe/Lisbon", "EUR")
VENUES = 50
FIRST_DAY = date(2015, 1, 1)
DAYS = 4 * 365
REQUEST: dict[str, Any] = {
    "dataset": "bookings",
    "group_by": ["venue_id", {"field": "service_date", "grain": "month"}],
    "metrics": [
        {"op": "count"},
        {"op": "sum", "field": "amount_minor"},
        {"op": "avg", "field": "amount_minor"},
        {"op": "percentile", "field": "amount_minor", "p": 0.9},
        {"op": "distinct_count", "field": "client_id"},
    ],
    "time_range": {"field": "service_date", "from": "2015-01-01", "to": "2018-12-31"},
    "limit": 10_000,
}


ROLLUP_REQUEST: dict[str, Any] = {**REQUEST, "metrics": REQUEST["metrics"][:3]}
""":data:`REQUEST` with its additive metrics only (count, sum and average of the amount)."""
ROLLUP_TARGET_MS = 100.0


def synthetic_rows(n: int, seed: int) -> Iterator[BookingRow]:
    """``n`` bookings: 50 venues, service dates 2015-2018, 5 % in USD, 20 % cancelled."""
    rng = random.Random(seed)
    for i in range(n):
        service = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        booked = datetime.combine(
            service - timedelta(days=rng.randrange(1, 500)), datetime.min.time(), tzinfo=UTC
        ) + timedelta(minutes=rng.randrange(24 * 60))
        cancelled = rng.random() < 0.2
        yield BookingRow(
            organization_id=ORG.id,
            id=f"bench-{i}",
            venue_id=f"venue-{rng.randrange(VENUES):02d}",
            service_date=service,
            nights=rng.randrange(0, 8),
            booked_at=booked,
            amount_minor=rng.randrange(10_000, 2_000_000),
            currency="USD" if rng.random() < 0.05 else "EUR",
            status="cancelled" if cancelled else "booked",
            cancelled_at=booked + timedelta(days=1) if cancelled else None,
            source_event_id=None,
        )


async def load(dsn: str, rows: int, seed: int) -> float:
    """Create the organisation and COPY the rows; returns the seconds the load took."""
    await add_organization(
        dsn, ORG, [Venue(f"venue-{v:02d}", f"Venue {v}", 1) for v in range(VENUES)]
    )
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        loaded = await copy_bookings(conn, synthetic_rows(rows, seed))
        await conn.execute("ANALYZE bookings")
        seconds = time.perf_counter() - started
        total = await conn.fetchval(
            "SELECT count(*) FROM bookings WHERE organization_id = $1", ORG.id
        )
        assert total == rows, (total, loaded)
        return seconds
    finally:
        await conn.close()


Variant = Callable[[], Awaitable[int]]
"""One way of running the aggregation; returns the number of groups it got."""


async def interleaved(variants: dict[str, Variant], repeat: int) -> dict[str, list[float]]:
    """Seconds of ``repeat`` rounds; each round runs every variant once, in rotating order,
    so a burst of load from other processes falls on all of them alike. One warm-up each."""
    groups = {name: await fn() for name, fn in variants.items()}
    assert len(set(groups.values())) == 1, groups
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeat):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t = time.perf_counter()
            await variants[name]()
            times[name].append(time.perf_counter() - t)
    return times


def _print_optimiser(answer: dict[str, Any]) -> None:
    """The optimiser's answer, condensed (the plan is left out)."""
    b = answer["baseline"]
    print("optimiser (POST /orgs/{org}/aggregations/optimize, same answer):")
    print(
        f"  baseline: {b['runs']} runs of EXPLAIN (ANALYZE, BUFFERS): median {b['median_ms']} ms,"
        f" p95 {b['p95_ms']} ms, buffers {b['buffers']}, {b['rows']} rows,"
        f" checksum {b['checksum'][:16]}"
    )
    for i, c in enumerate(answer["candidates"]):
        m = c.get("measured")
        figures = (
            f"median {m['median_ms']} ms, p95 {m['p95_ms']} ms, build {m['build_ms']} ms,"
            f" {m['rollup_rows']} rollup rows, checksum {m['checksum'][:16]}"
            f" (same result: {c['same_result']})"
            if m
            else f"the planner would use it: {c['planner_would_use']}"
            if c.get("planner_would_use") is not None
            else c["reason"]
        )
        print(f"  candidate {i}: {c['kind']} [{c['status']}] {c['definition']}")
        print(f"      {figures}; improvement: {c['improvement']}")
    print(f"  rule: {answer['rule']}")
    print(f"  verdict: {answer['verdict']}")


async def rollup_part(pool: asyncpg.Pool, rows: int, repeat: int) -> None:
    """The optimiser, its proposed rollup, and bare SQL / unoptimised / rollup timings."""
    answer = await optimize(pool, ORG.id, ROLLUP_REQUEST, runs=5)
    _print_optimiser(answer)
    proposal = answer["candidates"][0]
    assert proposal["kind"] == "rollup" and proposal["same_result"], proposal
    async with pool.acquire() as conn:
        started = time.perf_counter()
        rollup_id = await create_rollup(conn, ORG.id, definition_from_dict(proposal["definition"]))
        build_s = time.perf_counter() - started
    print(f"rollup {rollup_id} created from the proposal and built in {build_s * 1000:.0f} ms")
    query = compile_request(request_from_dict(ROLLUP_REQUEST), ORG.id, ORG.time_zone)
    sums: dict[str, str] = {}

    async def bare_sql() -> int:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_indexscan = off")
            records = await conn.fetch(query.sql, *query.params)
        shaped = shape_result(
            request_from_dict(ROLLUP_REQUEST), ORG.id, ORG.time_zone, query, records, 0.0, None
        )
        sums["bare SQL (base statement, superuser)"] = checksum(shaped)
        return len(shaped.rows)

    async def unoptimised() -> int:
        result = await aggregate(pool, ORG.id, ROLLUP_REQUEST, use_rollups=False)
        assert result.rollup_id is None
        assert sum(int(str(r["count"])) for r in result.rows) == rows
        sums["Python API, unoptimised (history table)"] = checksum(result)
        return len(result.rows)

    async def from_rollup() -> int:
        result = await aggregate(pool, ORG.id, ROLLUP_REQUEST)
        assert result.rollup_id == rollup_id, result.rollup_id
        sums[f"Python API, from rollup {rollup_id}"] = checksum(result)
        return len(result.rows)

    variants: dict[str, Variant] = {
        "bare SQL (base statement, superuser)": bare_sql,
        "Python API, unoptimised (history table)": unoptimised,
        f"Python API, from rollup {rollup_id}": from_rollup,
    }
    times = await interleaved(variants, repeat)
    groups = await from_rollup()
    print(
        f"rollup-answered aggregation: {rows:,} rows -> {groups:,} groups, medians of {repeat}"
        " interleaved rounds after a warm-up:"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:<44} {median * 1000:8.1f} ms  (min {min(values) * 1000:.1f} ms)"
            f"  checksum {sums[name][:16]}"
        )
    assert len(set(sums.values())) == 1, sums
    print("  identical results: every checksum equal")
    rollup_median = statistics.median(times[f"Python API, from rollup {rollup_id}"]) * 1000
    verdict = "met" if rollup_median < ROLLUP_TARGET_MS else "MISSED"
    print(f"  target: rollup path under {ROLLUP_TARGET_MS:.0f} ms: {verdict}")


async def run(
    state: Path, rows: int, seed: int, repeat: int, http: bool, rollup_only: bool = False
) -> None:
    async with stack(state, topics=False) as s:
        await measure(s, state, rows, seed, repeat, http, rollup_only)


async def measure(
    s: Settings, state: Path, rows: int, seed: int, repeat: int, http: bool, rollup_only: bool
) -> None:
    """Load the rows, time the aggregation every way, then the rollup part; print."""
    load_s = await load(s.postgres_dsn, rows, seed)
    print(f"load: {rows:,} booking rows with COPY in {load_s:.1f} s = {rows / load_s:,.0f} rows/s")

    pool = await asyncpg.create_pool(s.postgres_dsn, min_size=1, max_size=2)
    worker = None
    session: aiohttp.ClientSession | None = None
    try:
        if rollup_only:
            await rollup_part(pool, rows, max(repeat, 9))
            return
        query = compile_request(request_from_dict(REQUEST), ORG.id, ORG.time_zone)

        async def python_api() -> int:
            result = await aggregate(pool, ORG.id, REQUEST)
            assert sum(int(str(r["count"])) for r in result.rows) == rows
            return len(result.rows)

        async def bare_default() -> int:
            async with pool.acquire() as conn:
                return len(await conn.fetch(query.sql, *query.params))

        async def bare() -> int:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                return len(await conn.fetch(query.sql, *query.params))

        variants: dict[str, Variant] = {
            "bare asyncpg, default planner settings": bare_default,
            "bare asyncpg, enable_indexscan off (= bare)": bare,
            "Python API": python_api,
        }
        if http:
            await ensure_topics(s.kafka_bootstrap, s.topic_partitions)
            worker = bench_worker(s, state, "bench-worker", "bench-aggregation")
            await worker.wait_ready(timeout_s=120, min_partitions=1)
            token = issue_token(
                s.jwt_secret, user_id="bench", organization_id=ORG.id, ttl_seconds=3600
            )
            session = aiohttp.ClientSession(worker.url, timeout=aiohttp.ClientTimeout(total=60))
            http_session = session

            async def over_http() -> int:
                async with http_session.post(
                    f"/orgs/{ORG.id}/aggregations",
                    json=REQUEST,
                    headers={"Authorization": f"Bearer {token}"},
                ) as r:
                    assert r.status == 200, await r.text()
                    body: dict[str, Any] = await r.json()
                    return int(body["row_count"])

            variants["HTTP (worker, JSON)"] = over_http
        load_before = os.getloadavg()[0]
        times = await interleaved(variants, repeat)
        load_after = os.getloadavg()[0]
        groups = await python_api()
        print(f"aggregation: {rows:,} rows -> {groups:,} groups (venue x month x currency)")
        print(
            f"  medians of {repeat} interleaved rounds after a warm-up "
            f"(1-min load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores):"
        )
        bare_s = statistics.median(times["bare asyncpg, enable_indexscan off (= bare)"])
        for name, values in times.items():
            median = statistics.median(values)
            print(
                f"  {name:<44} {median * 1000:7.0f} ms = {median / bare_s:.2f}x bare"
                f"  (min {min(values) * 1000:.0f} ms)"
            )
        print("  target: under 2,000 ms")
        await rollup_part(pool, rows, max(repeat, 9))
    finally:
        if session is not None:
            await session.close()
        await pool.close()
        if worker is not None:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-http", action="store_true", help="skip the worker and HTTP")
    parser.add_argument(
        "--rollup-only", action="store_true", help="only the optimiser and rollup part"
    )
    args = parser.parse_args()
    with state_folder("wedding-bench-agg") as state:
        asyncio.run(
            run(state, args.rows, args.seed, args.repeat, not args.no_http, args.rollup_only)
        )


if __name__ == "__main__":
    main()
