"""Where a worker's latency tail comes from: event-loop lag and garbage-collection pauses.

Every HTTP answer, metric update and report step of a worker runs on one asyncio event loop;
anything that holds the loop (a long callback, a full garbage collection) delays all of them
at once, which shows as the p99 of every route rising together. Two Prometheus histograms
(on ``/metrics``) tell the two apart:

- ``wedding_event_loop_lag_seconds``: a task asks to wake every :data:`PROBE_INTERVAL_S`
  and records how late it woke (the time the loop was busy elsewhere). The same probe as
  Node's ``monitorEventLoopDelay`` and aiohttp deployments' "loop lag" gauges.
- ``wedding_gc_pause_seconds{generation}``: the wall time of each cyclic garbage collection,
  measured by a ``gc.callbacks`` hook (the interpreter calls it at the start and the end of
  every collection, `gc docs <https://docs.python.org/3/library/gc.html#gc.callbacks>`_).

Both cost next to nothing (one wake-up every 100 ms; two ``perf_counter`` calls per
collection). :func:`install_gc_timer` is called once when a worker starts; the lag probe
runs as one of the app's tasks.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import Histogram

from stream_app.app import app
from stream_app.observability import REGISTRY

PROBE_INTERVAL_S = 0.1
"""How often the lag probe asks to wake (seconds)."""

_PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

EVENT_LOOP_LAG = Histogram(
    "wedding_event_loop_lag_seconds",
    "How late the event loop woke a task that asked to sleep 100 ms (time spent elsewhere).",
    registry=REGISTRY,
    buckets=_PAUSE_BUCKETS,
)
GC_PAUSE = Histogram(
    "wedding_gc_pause_seconds",
    "Wall time of each cyclic garbage collection, by the generation collected.",
    ["generation"],
    registry=REGISTRY,
    buckets=_PAUSE_BUCKETS,
)

_gc_started: list[float] = []


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    """``gc.callbacks`` hook: time from ``start`` to ``stop`` of one collection."""
    if phase == "start":
        _gc_started.append(time.perf_counter())
    elif _gc_started:
        GC_PAUSE.labels(str(info.get("generation", "?"))).observe(
            time.perf_counter() - _gc_started.pop()
        )


def install_gc_timer() -> None:
    """Time every garbage collection of this process from now on (idempotent)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


async def measure_loop_lag(stop: asyncio.Event | None = None) -> None:
    """Record the event loop's lag every :data:`PROBE_INTERVAL_S` until ``stop`` is set
    (forever when ``None``)."""
    while stop is None or not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(PROBE_INTERVAL_S)
        EVENT_LOOP_LAG.observe(max(0.0, time.perf_counter() - asked - PROBE_INTERVAL_S))


@app.task  # type: ignore[untyped-decorator]
async def _loop_lag_probe() -> None:
    install_gc_timer()
    await measure_loop_lag()
