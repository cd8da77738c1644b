"""Garbage-collector settings of a worker, chosen for the latency of live metrics.

CPython's cyclic collector runs a first-generation pass every 700 net allocations of
container objects, and a worker folding thousands of rows per second allocates that many in
well under a millisecond; every few passes become a second-generation pass, and full passes
walk every object of the process (faust's, aiokafka's, the tables' caches). Measured with
``loadtests.bench_latency`` at 1,000 events/s on 2 cores: p99 105 ms with Python's
defaults, 63–65 ms with the settings below (README, Benchmarks).

:func:`tune` (called once before the worker starts, after :func:`stream_app.runtime.install`)
collects, then *freezes* what exists at start (modules, the app, its tables: ``gc.freeze``,
as Instagram's Django fleet does; they are never scanned again) and raises the thresholds
to ``(gen0, 20, 100)``: fewer, larger young-generation passes over objects that mostly die
young anyway. Reference counting still frees every acyclic object at once; only cycles wait longer.

:func:`paused` holds the collector off over a batch's synchronous CPU work (decode, dedupe, fold,
building its updates): a young-generation pass in the middle of a fold walks every row and
update of the batch, all still alive, and promotes them, so later passes walk them again;
after the batch they are garbage and the pass that follows is short. In-process (the bookings
batch path without Kafka, 200,000 events, three rounds alternating): 79.6 / 81.6 / 85.9 µs of
CPU per event against 107.1 / 104.8 / 94.8 without, 77.4 with the collector off.

:func:`follow_batch` raises the young threshold while the fold agents work off a backlog.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100

BACKLOG_EVENTS = 2_000
"""A fold batch of at least this many events means the worker is working off a backlog."""

BACKLOG_GEN0 = 1_000_000
"""The young-generation threshold while a backlog is folded (:func:`follow_batch`)."""

BACKLOG_HOLD_S = 2.0
"""How long after the last backlog batch the threshold stays at :data:`BACKLOG_GEN0`, seconds
(the four fold agents' batches interleave: a small one of a quiet topic does not end it)."""

_base: list[int] = [0]
_backlog_until: list[float] = [0.0]


def tune(gen0_threshold: int) -> tuple[int, int, int]:
    """Freeze the start-up heap and set the thresholds; ``0`` leaves Python's settings.

    Returns:
        The thresholds in force afterwards (``gc.get_threshold()``).
    """
    _base[0] = gen0_threshold
    _backlog_until[0] = 0.0
    if gen0_threshold > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(gen0_threshold, GEN1_THRESHOLD, GEN2_THRESHOLD)
    return gc.get_threshold()


def follow_batch(events: int, now: float | None = None) -> int:
    """Set the young-generation threshold for a fold batch of ``events`` events: at least
    :data:`BACKLOG_EVENTS` raise it to :data:`BACKLOG_GEN0` (a backlog), and it returns to
    :func:`tune`'s value :data:`BACKLOG_HOLD_S` seconds after the last such batch. Nothing
    changes when :func:`tune` left Python's settings (``0``). ``now``: monotonic seconds.

    Why: a young pass walks every young object still alive, and a backlog batch of tens of
    thousands of events keeps a million of them alive while it is folded and in flight, so
    each pass was tens of milliseconds and the passes took ~10 % of the fold (py-spy):
    ``bench_million`` at 1,000,000 events, 80,000 per poll, 35.0 / 32.2 µs of CPU per event
    with 1,000,000 against 38.1 / 38.3 with 50,000 (two rounds alternating). Live updates at
    steady rates come in small batches, so the HTTP reads and the latency path keep the
    shorter passes of :func:`tune`'s threshold.

    Returns:
        The young-generation threshold in force afterwards.
    """
    base = _base[0]
    if base <= 0:
        return gc.get_threshold()[0]
    at = time.monotonic() if now is None else now
    if events >= BACKLOG_EVENTS:
        _backlog_until[0] = at + BACKLOG_HOLD_S
    target = max(base, BACKLOG_GEN0) if at < _backlog_until[0] else base
    if gc.get_threshold()[0] != target:
        gc.set_threshold(target, GEN1_THRESHOLD, GEN2_THRESHOLD)
    return target


@contextmanager
def paused() -> Iterator[None]:
    """Hold the cyclic collector off inside the block (no ``await`` in it: other tasks run
    with it on); a block nested in another, or run with the collector already off, changes
    nothing. Objects freed by reference counting are still freed at once."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
