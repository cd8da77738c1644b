"""The retention task of a worker: applies the organisations' retention rules once per
interval (``WEDDING_RETENTION_INTERVAL_S``) across all workers.

Every worker ticks; the interval's row in ``retention_runs`` is claimed by exactly one of
them (:func:`stream_app.gdpr.retention.run_once`), so a worker that dies does not stop
retention and no interval runs twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from stream_app.app import app, settings
from stream_app.db.pool import get_pool, get_system_pool
from stream_app.gdpr.retention import run_once

log = logging.getLogger(__name__)

MAX_TICK_S = 30.0
"""Longest wait between two claim attempts (an interval is claimed at most this late)."""


@app.task  # type: ignore[untyped-decorator]
async def run_retention() -> None:
    """Tick until the worker stops; a failed run is logged and retried at the next tick (its
    interval stays claimed: the next interval applies the rules again, nothing is lost)."""
    pool = await get_pool(settings.postgres_dsn)
    system_pool = await get_system_pool(settings.postgres_system_dsn)
    worker = f"{socket.gethostname()}:{os.getpid()}:{settings.web_port}"
    tick = min(settings.retention_interval_s / 2, MAX_TICK_S)
    while True:
        try:
            result = await run_once(
                pool,
                settings.artifact_dir,
                worker,
                settings.retention_interval_s,
                system_pool=system_pool,
            )
            if result:
                log.info("retention run: %s", result)
        except Exception:
            log.exception("retention run failed")
        await asyncio.sleep(tick)
