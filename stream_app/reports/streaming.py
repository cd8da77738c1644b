"""Report rows read through server-side cursors while the renderers write them.

Part of the report layer. A builder that has a :class:`ReportSession` (the report generator opens
one per generation, :func:`open_session`) returns :class:`StreamedRows` instead of lists for
its large tables: each iteration (one per output format) opens a server-side cursor
(asyncpg ``Connection.cursor``) on the session's connection and fetches :data:`BATCH_ROWS`
rows at a time, so a renderer holds one batch, not the result.

**One snapshot for every format.** The session is one connection in one ``REPEATABLE READ``
transaction, entered as the organisation's tenant
(:func:`~stream_app.db.tenancy.tenant_transaction`: the RLS role and the organisation are
fixed for it), from the builder's first query to the
last format rendered: the key figures computed at build time and every format's rows come
from the same snapshot, whatever is written meanwhile.

**Threads.** Renderers are synchronous and run in a worker thread; the cursor lives on the
event loop. :class:`StreamedRows` hands each fetch to the loop
(:func:`asyncio.run_coroutine_threadsafe`) and waits for the batch, so the loop keeps serving
everything else between batches. Iterating streamed rows on the loop's own thread would wait
for itself: it raises :class:`RuntimeError` instead.

Each iteration is one query for monitoring (:mod:`stream_app.db.monitoring`): its database
time is the time spent waiting for batches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from stream_app.db import monitoring
from stream_app.db.tenancy import tenant_transaction
from stream_app.reports.model import Cell

BATCH_ROWS = 2_000
"""Rows fetched from a cursor at a time (memory of a streamed table ∝ this)."""


class ReportSession:
    """The connection, transaction and event loop a report's streamed rows are read with.

    Attributes:
        conn: the connection (inside the session's tenant transaction); builders run their
            other queries on it too, so everything reads one snapshot.
        organization_id / report_type: the tenant, and the report type (the ``dataset`` of
            the report's queries in monitoring).
        queries: every streamed query's monitoring record, in the order they finished.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        organization_id: str,
        report_type: str,
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event | None = None,
    ) -> None:
        self.conn = conn
        self.organization_id = organization_id
        self.report_type = report_type
        self.queries: list[monitoring.QueryRecord] = []
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._stop = stop

    def rows(
        self, sql: str, params: Sequence[Any], convert: Callable[[asyncpg.Record], Sequence[Cell]]
    ) -> StreamedRows:
        """The rows of ``sql`` (with ``params``), each converted by ``convert``, streamed."""
        return StreamedRows(self, sql, tuple(params), convert)

    def _call(self, coro: Any) -> Any:
        """Run ``coro`` on the session's loop from a worker thread; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _raw_conn(self) -> Any:
        # the report generator's timed wrapper exposes the asyncpg connection as ``_conn``
        return getattr(self.conn, "_conn", self.conn)

    async def _open(self, sql: str, params: Sequence[Any]) -> Any:
        return await self._raw_conn().cursor(sql, *params)

    async def _observe(
        self, sql: str, params: Sequence[Any], seconds: float, rows: int, started: datetime
    ) -> None:
        rec = await monitoring.observe(
            self._raw_conn(),
            self.organization_id,
            "report",
            self.report_type,
            sql,
            params,
            seconds,
            rows,
            started,
        )
        self.queries.append(rec)

    def _check_thread(self) -> None:
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "streamed report rows are read by a renderer in a worker thread"
                " (asyncio.to_thread), never on the event loop's thread"
            )

    def stopped(self) -> bool:
        """The report's stop flag is set (cancelled): stop reading."""
        return self._stop is not None and self._stop.is_set()


class StreamedRows:
    """The rows of one query, read through a new server-side cursor at each iteration.

    Re-iterable (each renderer reads the rows once); every iteration sees the session's
    snapshot, so every format gets the same rows in the same order (give the query an
    ``ORDER BY`` that is total).

    Raises (while iterating):
        RuntimeError: iterated on the event loop's thread.
        asyncpg.PostgresError: the query failed.
    """

    def __init__(
        self,
        session: ReportSession,
        sql: str,
        params: tuple[Any, ...],
        convert: Callable[[asyncpg.Record], Sequence[Cell]],
    ) -> None:
        self._session = session
        self._sql = sql
        self._params = params
        self._convert = convert

    def __iter__(self) -> Iterator[Sequence[Cell]]:
        s = self._session
        s._check_thread()
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        cursor = s._call(s._open(self._sql, self._params))
        seconds = time.perf_counter() - t0
        n = 0
        try:
            while not s.stopped():
                t0 = time.perf_counter()
                batch = s._call(cursor.fetch(BATCH_ROWS))
                seconds += time.perf_counter() - t0
                if not batch:
                    break
                for record in batch:
                    n += 1
                    yield self._convert(record)
                del batch
        finally:
            s._call(s._observe(self._sql, self._params, seconds, n, started))


@asynccontextmanager
async def open_session(
    pool: Any,
    organization_id: str,
    report_type: str,
    stop: threading.Event | None = None,
) -> AsyncIterator[ReportSession]:
    """A :class:`ReportSession`: a connection from ``pool`` in a ``REPEATABLE READ``
    transaction entered as ``organization_id``'s tenant, held until the block ends.

    ``pool`` is an asyncpg pool (or the report generator's timed wrapper of one).
    """
    async with pool.acquire() as conn:
        raw = getattr(conn, "_conn", conn)  # the set-up is not a query of the report
        async with (
            raw.transaction(isolation="repeatable_read"),
            tenant_transaction(raw, organization_id),
        ):
            yield ReportSession(
                conn, organization_id, report_type, asyncio.get_running_loop(), stop
            )
