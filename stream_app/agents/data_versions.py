"""Data versions of the report cache, bumped by the fold agents once a batch's rows are durable.

A cached report remembers the data version of every stream it read (``ReportType.reads``);
it is stale once one moved. The agents bump the version of each ``(organisation, stream)``
whose rows a batch changed, in PostgreSQL (``report_data_versions``), once the batch's rows
are in RocksDB (never before: a report computed in between would read the old rows and be
cached under the new version). The write runs in the background, at most one statement per
:data:`MIN_INTERVAL_S` per stream (the counts of the batches meanwhile are added up), so a
report requested within that time of a metric update on ``realtime-metrics-updates`` (sent
with the batch's changelog records, before the rows are durable) can still be served from a
copy computed before it. If PostgreSQL cannot be reached the counts are kept and written
with the next batch (the cache's time to live bounds how long a stale copy can be served
meanwhile); a warning is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import asyncpg

from stream_app.db import reports as report_db
from stream_app.db.pool import get_system_pool

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.1
"""Shortest time between two writes of one stream's counts, seconds. At 4,000 events/s a
worker folds ~300 batches/s; one statement (and one pooled connection's reset) per batch cost
3.5 % of its CPU (py-spy) and as many PostgreSQL round trips; at most 10 a second per stream."""


class DataVersions:
    """Changed-row counts of one stream per organisation, written by :meth:`flush`."""

    def __init__(self, dsn: str, stream: str) -> None:
        self.dsn = dsn
        self.stream = stream
        self.pending: Counter[str] = Counter()
        self._flusher: asyncio.Task[None] | None = None

    def record(self, organization_id: str, rows: int = 1) -> None:
        """Note ``rows`` changed rows of ``organization_id`` in this stream."""
        self.pending[organization_id] += rows

    def flush_soon(self) -> None:
        """Write the pending counts in the background (one writer at a time; counts recorded
        meanwhile go with its next round, at least :data:`MIN_INTERVAL_S` later), so a batch
        does not wait for PostgreSQL: the batch loop calls it once per batch, and a burst of
        small batches costs one round trip per round instead of one each."""
        if self.pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._flush_all())

    async def _flush_all(self) -> None:
        while self.pending:
            before = sum(self.pending.values())
            await self.flush()
            if sum(self.pending.values()) >= before:
                return  # the write failed (logged): the next batch tries again
            await asyncio.sleep(MIN_INTERVAL_S)

    async def flush(self) -> None:
        """Add the pending counts to the data versions (kept for later if the write fails)."""
        if not self.pending:
            return
        taken = Counter(self.pending)
        counts = {(org, self.stream): n for org, n in taken.items()}
        try:
            pool = await get_system_pool(self.dsn)
            async with pool.acquire() as conn:
                await report_db.bump_data_versions(conn, counts)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("report cache data versions not written (%s); kept for the next batch", exc)
            return
        self.pending.subtract(taken)  # what was recorded meanwhile stays pending
        self.pending += Counter()  # drops the zero counts
