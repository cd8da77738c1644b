"""The scheduler task of a worker: claims due schedule runs and requests their reports.

Every worker runs it; exactly one run per fire time comes from PostgreSQL
(``UNIQUE (organization_id, schedule_id, fire_time)`` on ``schedule_runs``, see
:mod:`stream_app.schedules.store`), not from electing a leader, so a worker that dies does not
stop schedules. Requests are accepted like any other report request
(:func:`stream_app.reports.accept.accept`, channel ``schedule``).
"""

from __future__ import annotations

import asyncio
import logging

from stream_app.app import app, settings
from stream_app.db.pool import get_pool, get_system_pool
from stream_app.reports.accept import accept, validate
from stream_app.schedules.runner import scheduler_loop
from stream_app.schemas.base import encode_event
from stream_app.schemas.reports import ReportRequest

log = logging.getLogger(__name__)


async def submit_report_request(request: ReportRequest) -> None:
    """Accept ``request`` (record, audit, send to its lane; idempotent for a re-submitted run)."""
    raw = encode_event(request)
    await accept(validate(raw), raw, channel="schedule", pool=await get_pool(settings.postgres_dsn))


@app.task  # type: ignore[untyped-decorator]
async def run_scheduler() -> None:
    """Tick every ``WEDDING_SCHEDULER_INTERVAL_S`` seconds until the worker stops."""
    if not settings.scheduling_enabled:
        return
    pool = await get_system_pool(settings.postgres_system_dsn)
    stop = asyncio.Event()
    try:
        await scheduler_loop(
            pool,
            submit_report_request,
            settings.scheduler_interval_s,
            stop,
            submitted_timeout_s=settings.schedule_run_timeout_s,
        )
    finally:
        stop.set()
