"""The watchdog of a running report: its heartbeat, and its cancellation seen in PostgreSQL.

Part of the reports layer. A running report refreshes its ``updated_at`` every
:data:`HEARTBEAT_S`; a ``processing`` report whose heartbeat is older than
:data:`REPORT_STALE_AFTER_S` is taken over by the worker that holds its request
(:mod:`stream_app.reports.lanes`) or sent round again (:mod:`stream_app.reports.recovery`).
A report cancelled from elsewhere is stopped within :attr:`Settings.report_cancel_poll_s`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import asyncpg

from stream_app.app import settings
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool

HEARTBEAT_S = 2.0
"""How often a running report refreshes its ``updated_at`` in PostgreSQL (its heartbeat)."""
REPORT_STALE_AFTER_S = 15.0
"""A ``processing`` report whose heartbeat is older than this is taken over by the worker
that holds its request (its own worker died or was paused)."""


async def watch_report(
    organization_id: str, report_id: str, task: asyncio.Task[Any], stop: threading.Event
) -> None:
    """Cancel ``task`` (and stop its render thread) once the report is ``cancelled``; keep
    the report's heartbeat (``updated_at``) fresh while it runs (:data:`REPORT_STALE_AFTER_S`)."""
    pool = await get_pool(settings.postgres_dsn)
    beat_at = time.monotonic()
    while not task.done():
        await asyncio.sleep(settings.report_cancel_poll_s)
        beat = time.monotonic() - beat_at >= HEARTBEAT_S
        try:
            async with pool.acquire() as conn:
                if beat:
                    status = await report_db.heartbeat(conn, organization_id, report_id)
                    beat_at = time.monotonic()
                else:
                    status = await report_db.current_status(conn, organization_id, report_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            continue
        if status == "cancelled":
            stop.set()
            task.cancel()
            return
