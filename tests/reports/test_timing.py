"""What a report's generation measures (:mod:`stream_app.reports.timing`): the wall time of
awaited queries added to the run, and the performance figures of a status in milliseconds.

(The queries a :class:`~stream_app.reports.timing.TimedPool` sends to PostgreSQL and their
query log are exercised through a worker in ``tests/web/test_query_stats.py``.)
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stream_app.reports.timing import Run, performance


async def test_awaited_time_is_added_to_the_query_time_also_when_it_raises() -> None:
    run = Run()
    t0 = time.perf_counter()
    assert await run.timed(asyncio.sleep(0.05, result="rows")) == "rows"
    with pytest.raises(ValueError, match="refused"):
        await run.timed(_sleep_then_raise(0.03))
    elapsed = time.perf_counter() - t0
    assert 0.08 <= run.query_s <= elapsed
    assert (run.processing_s, run.rendering_s, run.cpu_s) == (0.0, 0.0, 0.0)


async def _sleep_then_raise(seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise ValueError("refused")


def test_performance_is_in_milliseconds_rounded_to_microseconds() -> None:
    run = Run(query_s=0.0012344, processing_s=0.25, rendering_s=1.5, cpu_s=0.0333336)
    started = time.perf_counter() - 2.0  # two seconds ago
    perf = performance(run, started, peak=123_456)
    assert perf.query_ms == 1.234
    assert perf.processing_ms == 250.0
    assert perf.rendering_ms == 1500.0
    assert perf.cpu_ms == 33.334
    assert perf.peak_memory_bytes == 123_456
    assert 2000.0 <= perf.total_ms < 2000.0 + 5_000.0


def test_a_negative_processing_time_counts_as_zero() -> None:
    # processing is build time minus query time; clock granularity can make it negative
    perf = performance(Run(processing_s=-0.0004), time.perf_counter(), peak=0)
    assert perf.processing_ms == 0.0
