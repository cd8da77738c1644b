"""Benchmark: the worker CPU a request's rate-limit check costs, two ``limits`` hits against
the one-round-trip check of :mod:`stream_app.web.ratelimit`.

Every HTTP request of a token counts against two moving windows in Redis: its token's and its
organisation's. ``limits``' ``MovingWindowRateLimiter.hit`` counts one window per call (one
Lua script, one round trip each); the worker counts both in one script
(:func:`stream_app.web.ratelimit.check_request`). This runs both against a fresh local Redis
(Debian's ``redis-server``, started here), alternating, ``--rounds`` times each, with
``--concurrency`` requests in flight (a worker under load), and prints the process CPU per
request (``time.process_time``: this process only, the Redis server apart) and the requests a
second. Both paths count in the same key layout, so the second run of each meets full lists.

Usage: ``python -m loadtests.bench_ratelimit [--requests 20000] [--concurrency 1,10,50]
[--rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from stream_app.devservices import redis as redis_service


async def _measure(
    name: str, check: Callable[[int], Awaitable[None]], requests: int, concurrency: int
) -> tuple[float, float]:
    for i in range(200):  # warm: connections open, scripts loaded
        await check(i)

    async def lane(first: int) -> None:
        for i in range(first, requests, concurrency):
            await check(i)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane(k) for k in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    per_request_us, rate = 1e6 * cpu / requests, requests / wall
    print(f"{name:<32} {per_request_us:7.1f} µs CPU a request   {rate:9,.0f} requests/s")
    return per_request_us, rate


async def _run(requests: int, concurrencies: list[int], rounds: int) -> None:
    # imported here: the app's settings read WEDDING_REDIS_URL when first imported
    from limits.aio.strategies import MovingWindowRateLimiter

    from stream_app.app import settings
    from stream_app.web import ratelimit
    from stream_app.web.auth import Principal

    token_item = ratelimit._item(settings.rate_limits["reads"])
    org_item = ratelimit._item(settings.org_rate_limits["reads"])
    limiter: MovingWindowRateLimiter = ratelimit.limiter()
    principals = [
        Principal(user_id=f"u{i}", organization_id="bench", role="viewer", jti=f"j{i}")
        for i in range(1_000)
    ]

    async def two_hits(i: int) -> None:
        p = principals[i % len(principals)]
        await limiter.hit(token_item, "token", p.organization_id, f"{p.jti}", "reads")
        await limiter.hit(org_item, "org", p.organization_id, "reads")

    async def one_script(i: int) -> None:
        await ratelimit.check_request(principals[i % len(principals)], "reads")

    for concurrency in concurrencies:
        print(
            f"{requests:,} requests a run, {concurrency} in flight, token limit"
            f" {settings.rate_limits['reads']}, organisation limit"
            f" {settings.org_rate_limits['reads']}"
        )
        batcher = ratelimit._acquire_all
        sent = batcher.pipelines if batcher is not None else 0
        results: dict[str, list[float]] = {"two": [], "one": []}
        for _ in range(rounds):
            results["two"].append(
                (await _measure("limits: two hit() calls", two_hits, requests, concurrency))[0]
            )
            results["one"].append(
                (
                    await _measure(
                        "ours: one script, both windows", one_script, requests, concurrency
                    )
                )[0]
            )
        two, one = min(results["two"]), min(results["one"])
        batcher = ratelimit._acquire_all
        pipelines = (batcher.pipelines if batcher is not None else 0) - sent
        print(
            f"  best of {rounds}: {two:.1f} against {one:.1f} µs CPU a request"
            f" ({one / two:.2f}×); checks a pipeline on average:"
            f" {rounds * (requests + 200) / max(1, pipelines):.1f}"
        )


def main() -> None:
    """Parse the options, start Redis, run the comparison, stop Redis."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument(
        "--concurrency",
        type=lambda raw: [int(x) for x in raw.split(",")],
        default=[1, 10, 50],
        help="requests in flight, a comma-separated list (default 1,10,50)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as home:
        server = redis_service.start(Path(home))
        try:
            os.environ["WEDDING_REDIS_URL"] = server.url
            # limits out of reach: the benchmark measures the counting, not refusals
            os.environ["WEDDING_RATE_LIMITS"] = "reads=100000000/minute"
            os.environ["WEDDING_ORG_RATE_LIMITS"] = "reads=100000000/minute"
            asyncio.run(_run(args.requests, args.concurrency, args.rounds))
        finally:
            redis_service.stop(server.pid)


if __name__ == "__main__":
    main()
