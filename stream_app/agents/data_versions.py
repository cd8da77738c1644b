"""Data versions of the report cache, bumped by the fold agents right after each batch.

A cached report remembers the data version of every stream it read (``ReportType.reads``);
it is stale once one moved. The agents bump the version of each ``(organisation, stream)``
whose rows a batch changed, in PostgreSQL (``report_data_versions``), before they publish
the batch's metric updates: a client that sees an update and asks for a report never gets
a copy computed before it. One statement per batch. If PostgreSQL cannot be reached the
counts are kept and written with the next batch (the cache's time to live bounds how long a
stale copy can be served meanwhile); a warning is logged.
"""

from __future__ import annotations

import logging
from collections import Counter

import asyncpg

from stream_app.db import reports as report_db
from stream_app.db.pool import get_system_pool

log = logging.getLogger(__name__)

STREAM_OF_METRIC: dict[str, str] = {
    "venue_bookings": "bookings",
    "booking_payments": "payments",
    "client_interactions": "interactions",
    "supplier_activity": "suppliers",
}
"""Table (``metric`` of an update) → the stream name report types list in ``reads``."""


class DataVersions:
    """Changed-row counts of one stream per organisation, written by :meth:`flush`."""

    def __init__(self, dsn: str, stream: str) -> None:
        self.dsn = dsn
        self.stream = stream
        self.pending: Counter[str] = Counter()

    def record(self, organization_id: str, rows: int = 1) -> None:
        """Note ``rows`` changed rows of ``organization_id`` in this stream."""
        self.pending[organization_id] += rows

    async def flush(self) -> None:
        """Add the pending counts to the data versions (kept for later if the write fails)."""
        if not self.pending:
            return
        counts = {(org, self.stream): n for org, n in self.pending.items()}
        try:
            pool = await get_system_pool(self.dsn)
            async with pool.acquire() as conn:
                await report_db.bump_data_versions(conn, counts)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("report cache data versions not written (%s); kept for the next batch", exc)
            return
        self.pending.clear()
