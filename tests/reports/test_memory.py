"""Peak memory of each running report (:mod:`stream_app.reports.memory`): in the exact mode
(``tracemalloc``) the bytes a report allocates above its start, not what came before it; in
the default mode (``rss``) what the process grew by while it ran."""

from __future__ import annotations

import tracemalloc

from stream_app.reports.memory import MemoryTracer, rss_bytes

MB = 1_000_000


def test_a_report_counts_what_it_allocated_above_its_start() -> None:
    tracer = MemoryTracer("tracemalloc")
    before = bytearray(8 * MB)  # allocated before the report: not its memory
    token = tracer.begin()
    held = bytearray(20 * MB)
    peak = tracer.end(token)
    assert 20 * MB <= peak < 21 * MB
    assert not tracemalloc.is_tracing()  # stopped with the last report
    del held, before


def test_a_freed_allocation_still_counts_at_its_peak_and_an_idle_report_near_zero() -> None:
    tracer = MemoryTracer("tracemalloc")
    token = tracer.begin()
    temporary = bytearray(12 * MB)
    del temporary
    assert 12 * MB <= tracer.end(token) < 13 * MB
    idle = tracer.begin()
    assert tracer.end(idle) < MB


def test_an_unknown_token_measures_nothing() -> None:
    assert MemoryTracer("tracemalloc").end(12345) == 0


def test_the_default_mode_counts_the_resident_set_grown_during_the_report() -> None:
    tracer = MemoryTracer("rss")
    start = rss_bytes()
    token = tracer.begin()
    # every byte written: a zero-filled bytearray may be calloc's untouched pages (mmap), which
    # add nothing to the resident set until written (a run of the suite saw 4 KiB)
    block = bytearray(b"\x01") * (64 * MB)
    assert rss_bytes() - start >= 60 * MB
    assert tracer.end(token) >= 60 * MB
    del block
