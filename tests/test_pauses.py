"""The event-loop lag probe and the garbage-collection timer measure what they claim."""

from __future__ import annotations

import asyncio
import gc
import time

from stream_app.observability import REGISTRY
from stream_app.pauses import install_gc_timer, measure_loop_lag


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_loop_lag_records_a_blocked_loop() -> None:
    count0 = _sample("wedding_event_loop_lag_seconds_count")
    sum0 = _sample("wedding_event_loop_lag_seconds_sum")
    over0 = count0 - _sample("wedding_event_loop_lag_seconds_bucket", {"le": "0.25"})
    stop = asyncio.Event()
    probe = asyncio.create_task(measure_loop_lag(stop))
    await asyncio.sleep(0.15)
    time.sleep(0.4)  # noqa: ASYNC251 -- holds the loop on purpose: the probe wakes ~0.3 s late
    await asyncio.sleep(0.15)
    stop.set()
    await probe
    count1 = _sample("wedding_event_loop_lag_seconds_count")
    over1 = count1 - _sample("wedding_event_loop_lag_seconds_bucket", {"le": "0.25"})
    assert count1 - count0 >= 2
    assert over1 - over0 == 1  # exactly the one blocked wake-up lands above 250 ms
    assert _sample("wedding_event_loop_lag_seconds_sum") - sum0 >= 0.29


def test_gc_timer_counts_each_collection_by_generation() -> None:
    install_gc_timer()
    install_gc_timer()  # idempotent: still one observation per collection
    labels = {"generation": "2"}
    before = _sample("wedding_gc_pause_seconds_count", labels)
    gc.collect()
    gc.collect()
    assert _sample("wedding_gc_pause_seconds_count", labels) - before == 2
