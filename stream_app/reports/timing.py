"""What one report's generation measures: query, processing, rendering and CPU time.

Part of the reports layer (observability of a run). A :class:`Run` accumulates the times; the
builder's pool is a :class:`TimedPool` whose queries add their wall time to the run and go
through query monitoring (:mod:`stream_app.db.monitoring`); :func:`flush_queries` writes the
run's queries to the organisation's query log; :func:`performance` is the figure a completed
or failed status carries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg

from stream_app.db import monitoring
from stream_app.schemas.updates import PerformanceMetrics

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What one report's generation measured (seconds) and its stop flag."""

    query_s: float = 0.0
    processing_s: float = 0.0
    rendering_s: float = 0.0
    cpu_s: float = 0.0
    attempts: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    organization_id: str = ""
    report_type: str = ""
    queries: list[monitoring.QueryRecord] = field(default_factory=list)
    """The report's queries timed since the last flush to the query log."""

    async def timed(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw``, adding its wall time to the query time."""
        t0 = time.perf_counter()
        try:
            return await aw
        finally:
            self.query_s += time.perf_counter() - t0


_TIMED_METHODS = frozenset(
    {"fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_from_query"}
)
_MONITORED_METHODS = frozenset({"fetch", "fetchrow", "fetchval"})
"""The report queries (``execute`` is the transaction's set-up, not a query of the report)."""


class _TimedConnection:
    """An asyncpg connection whose queries add their wall time to a run's query time; the
    report's queries (:data:`_MONITORED_METHODS`) also go through query monitoring
    (:mod:`stream_app.db.monitoring`: histogram, slow-query plan and counter, query log)."""

    def __init__(self, conn: asyncpg.Connection, run: Run) -> None:
        self._conn = conn
        self._run = run

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in _TIMED_METHODS:
            return attr
        run = self._run
        conn = self._conn
        monitored = name in _MONITORED_METHODS and bool(run.report_type)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            result = await run.timed(attr(*args, **kwargs))
            if monitored and args and isinstance(args[0], str):
                rows = len(result) if name == "fetch" else int(result is not None)
                run.queries.append(
                    await monitoring.observe(
                        conn,
                        run.organization_id,
                        "report",
                        run.report_type,
                        args[0],
                        args[1:],
                        time.perf_counter() - t0,
                        rows,
                        started_at,
                    )
                )
            return result

        return timed


class _TimedAcquire:
    def __init__(self, ctx: Any, run: Run) -> None:
        self._ctx = ctx
        self._run = run

    async def __aenter__(self) -> _TimedConnection:
        conn = await self._run.timed(self._ctx.__aenter__())
        return _TimedConnection(conn, self._run)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._ctx.__aexit__(*exc)


class TimedPool:
    """The pool a report's builder gets: ``async with pool.acquire()`` and the pool's own
    query methods are timed; everything else is the asyncpg pool's."""

    def __init__(self, pool: asyncpg.Pool, run: Run) -> None:
        self._pool = pool
        self._run = run

    def acquire(self, *, timeout: float | None = None) -> _TimedAcquire:
        return _TimedAcquire(self._pool.acquire(timeout=timeout), self._run)

    def __getattr__(self, name: str) -> Any:
        return _TimedConnection.__getattr__(cast(Any, self), name)

    @property
    def _conn(self) -> asyncpg.Pool:  # what _TimedConnection.__getattr__ reads
        return self._pool


async def flush_queries(pool: asyncpg.Pool, run: Run) -> None:
    """Write the run's timed queries to the organisation's query log (best effort: a report
    never fails because its statistics could not be written)."""
    queries, run.queries = run.queries, []
    if not queries:
        return
    try:
        async with pool.acquire() as conn:
            await monitoring.record(conn, run.organization_id, queries)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("report queries of %s not logged: %s", run.organization_id, exc)


def performance(run: Run, started: float, peak: int) -> PerformanceMetrics:
    """The performance figures of ``run`` (milliseconds), its total counted from ``started``
    (a :func:`time.perf_counter` reading), with ``peak`` bytes of peak memory."""
    return PerformanceMetrics(
        query_ms=round(run.query_s * 1000, 3),
        processing_ms=round(max(0.0, run.processing_s) * 1000, 3),
        rendering_ms=round(run.rendering_s * 1000, 3),
        total_ms=round((time.perf_counter() - started) * 1000, 3),
        peak_memory_bytes=peak,
        cpu_ms=round(run.cpu_s * 1000, 3),
    )
