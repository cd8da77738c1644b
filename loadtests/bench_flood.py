"""Benchmark: one token floods the API; another organisation's reads stay fast.

With its own Kafka, PostgreSQL and Redis and two workers of one app (default rate limits,
counted in the shared Redis):

1. **baseline**: the victim organisation reads venue metrics alone (4 users, each with its
   own token, one request every 25 ms); prints p50/p99 latency;
2. **flood**: one token of the flooding organisation sends N requests (default 5,000; 32 at
   a time, alternating between the workers) to the same kind of read while the victim reads
   as in 1; prints the flooder's 200 and 429 counts (with the index of the first 429) and
   the victim's p50/p99 and status counts. The flooding client runs in a process of its own
   at ``nice`` 19 (the attacker's CPU is not the server's); the machine's load average is
   printed before and after, as other work on the machine moves every figure.

The victim's users stop after 400 requests each during the flood (with the baseline's this
stays under the organisation's default 2,400 reads a minute, so any 429 of the victim would be
a fault).

Usage: ``python -m loadtests.bench_flood [--requests N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp

from loadtests.common import add_organization, bench_worker, stack, state_folder
from stream_app.db.tenancy import Organization, Venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.web.auth import issue_token

FLOODER, VICTIM = "flood-a", "flood-b"
VENUES = ["v1", "v2", "v3", "v4"]
QUERY = {"grain": "month", "from": "2016-01", "to": "2016-12"}
VICTIM_USERS = 4
VICTIM_INTERVAL_S = 0.025
VICTIM_MAX_PER_USER = 400
FLOOD_CONCURRENCY = 32


def percentile(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of ascending values."""
    rank = max(1, -(-len(sorted_ms) * p // 100))
    return sorted_ms[int(rank) - 1]


async def victim(
    session: aiohttp.ClientSession,
    workers: list[WorkerProcess],
    settings: Settings,
    stop: asyncio.Event,
    user: int,
) -> tuple[list[float], Counter[int]]:
    """One victim user's reads until ``stop`` (or its cap): latencies (ms) and statuses."""
    token = issue_token(
        settings.jwt_secret,
        user_id=f"victim-{user}",
        organization_id=VICTIM,
        ttl_seconds=3600,
        role="viewer",
    )
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    n = 0
    while not stop.is_set() and n < VICTIM_MAX_PER_USER:
        worker = workers[(n + user) % len(workers)]
        venue = VENUES[(n + user) % len(VENUES)]
        t0 = time.perf_counter()
        async with session.get(
            f"{worker.url}/orgs/{VICTIM}/venues/{venue}/metrics", params=QUERY, headers=headers
        ) as r:
            await r.read()
            statuses[r.status] += 1
        latencies.append((time.perf_counter() - t0) * 1000)
        n += 1
        await asyncio.sleep(VICTIM_INTERVAL_S)
    return latencies, statuses


async def victims(
    session: aiohttp.ClientSession,
    workers: list[WorkerProcess],
    settings: Settings,
    stop: asyncio.Event,
) -> tuple[list[float], Counter[int]]:
    parts = await asyncio.gather(
        *(victim(session, workers, settings, stop, u) for u in range(VICTIM_USERS))
    )
    latencies = sorted(x for lat, _ in parts for x in lat)
    statuses: Counter[int] = Counter()
    for _, st in parts:
        statuses.update(st)
    return latencies, statuses


async def flood(urls: list[str], secret: str, n: int) -> tuple[Counter[int], int | None, float]:
    """``n`` requests of one token: status counts, index of the first 429, seconds taken."""
    token = issue_token(secret, user_id="flooder", organization_id=FLOODER, ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    first_429: list[int] = []
    counter = iter(range(n))

    async def one_lane(session: aiohttp.ClientSession) -> None:
        for i in counter:
            async with session.get(
                f"{urls[i % len(urls)]}/orgs/{FLOODER}/venues/{VENUES[i % len(VENUES)]}/metrics",
                params=QUERY,
                headers=headers,
            ) as r:
                await r.read()
                statuses[r.status] += 1
                if r.status == 429 and not first_429:
                    first_429.append(i)

    t0 = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=FLOOD_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one_lane(session) for _ in range(FLOOD_CONCURRENCY)))
    return statuses, (first_429[0] if first_429 else None), time.perf_counter() - t0


def flood_process(urls: list[str], secret: str, n: int) -> tuple[Counter[int], int | None, float]:
    """:func:`flood` in a process of its own, at the lowest CPU priority (``nice`` 19).

    An attacker's client runs on the attacker's machine; here it shares two cores with the
    workers and the victim, so it gets the CPU they leave (its own event loop apart, so its
    work does not delay the victim's and inflate the victim's measured latencies).
    """
    os.nice(19)
    return asyncio.run(flood(urls, secret, n))


async def settle(workers: list[WorkerProcess], settings: Settings) -> None:
    """Wait until every venue of the victim reads 200 on every worker (no rebalance left)."""
    token = issue_token(
        settings.jwt_secret, user_id="settle", organization_id=VICTIM, ttl_seconds=600
    )
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            codes = []
            for w in workers:
                for v in VENUES:
                    async with session.get(
                        f"{w.url}/orgs/{VICTIM}/venues/{v}/metrics", params=QUERY, headers=headers
                    ) as r:
                        codes.append(r.status)
            if all(c == 200 for c in codes):
                return
            await asyncio.sleep(1)
    raise TimeoutError("the workers did not settle in 120 s")


def describe(label: str, latencies: list[float], statuses: Counter[int]) -> None:
    print(
        f"{label}: {len(latencies)} reads, statuses {dict(sorted(statuses.items()))}, "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
        f"max {latencies[-1]:.1f} ms"
    )


async def run(n: int, state: Path) -> None:
    async with stack(state, redis=True) as s:
        await measure(s, state, n)


async def measure(s: Settings, state: Path, n: int) -> None:
    """Baseline, then the flood with the victim reading (module docstring); print."""
    for org in (FLOODER, VICTIM):
        await add_organization(
            s.postgres_dsn,
            Organization(org, org, "Europe/Lisbon", "EUR"),
            [Venue(v, v, 10) for v in VENUES],
        )
    workers = [
        bench_worker(s, state, f"worker-{name}", "bench-flood", unlimited_rates=False)
        for name in ("a", "b")
    ]
    try:
        await asyncio.gather(*(w.wait_ready(timeout_s=180) for w in workers))
        print(
            f"load average {os.getloadavg()[0]:.1f} (2 cores); "
            f"two workers ({', '.join(w.url for w in workers)}), limits per token "
            f"{s.rate_limits['reads']} reads, per organisation {s.org_rate_limits['reads']}, "
            f"store {s.redis_url}"
        )
        await settle(workers, s)
        async with aiohttp.ClientSession() as session:
            for seconds in (0.5, 3.0):  # a warm-up, then the baseline
                baseline_stop = asyncio.Event()
                base_task = asyncio.create_task(victims(session, workers, s, baseline_stop))
                await asyncio.sleep(seconds)
                baseline_stop.set()
                latencies, statuses = await base_task
            describe("victim alone", latencies, statuses)
            flood_stop = asyncio.Event()
            victim_task = asyncio.create_task(victims(session, workers, s, flood_stop))
            with ProcessPoolExecutor(1) as pool:
                statuses_f, first, took = await asyncio.get_running_loop().run_in_executor(
                    pool, flood_process, [w.url for w in workers], s.jwt_secret, n
                )
            flood_stop.set()
            latencies, statuses = await victim_task
            print(
                f"flooder: {n} requests in {took:.1f} s ({n / took:,.0f}/s): "
                f"200 × {statuses_f[200]}, 429 × {statuses_f[429]}, "
                f"other {sum(v for k, v in statuses_f.items() if k not in (200, 429))}; "
                f"first 429 at request #{first}"
            )
            describe("victim during the flood", latencies, statuses)
            print(f"load average {os.getloadavg()[0]:.1f}")
    finally:
        for w in workers:
            w.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    with state_folder("wedding-bench-flood") as state:
        asyncio.run(run(args.requests, state))


if __name__ == "__main__":
    main()
