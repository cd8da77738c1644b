"""The delivery agent: delivers the finished reports of scheduled runs and of report requests
that carry their own ``delivery``.

Consumes ``report-results``; each final status (``completed``, ``failed``, ``cancelled``) of
a report that a schedule run planned, and each ``completed`` status of a report whose request
asked for a delivery, becomes a row of the delivery queue, due at once
(:meth:`stream_app.delivery.worker.DeliveryWorker.enqueue_report`); consuming never waits
for an endpoint. The ``run_delivery_worker`` task attempts due rows in fair-share slots and
queues retries with their due time (:mod:`stream_app.delivery.worker`). Kafka's
at-least-once delivery of ``report-results``, the queue's one row per (run, report) and the
delivery log (a report already delivered for a run is not sent again) make each report reach
its destination once. A message whose queueing meets a PostgreSQL restart is tried again
until it is queued (:mod:`stream_app.transient`), not dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from functools import partial
from typing import Any

from stream_app.app import app, settings
from stream_app.crypto.keyring import get_keyring
from stream_app.db.pool import get_pool, get_system_pool
from stream_app.delivery.adhoc import AdhocDeliveries
from stream_app.delivery.dispatch import delivery_config
from stream_app.delivery.worker import DeliveryWorker
from stream_app.schedules.deliveries import ScheduleDeliveries
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.updates import ReportStatus
from stream_app.topology import report_results_topic
from stream_app.transient import handle_until_done

log = logging.getLogger(__name__)
config = delivery_config(settings)
_worker: DeliveryWorker | None = None


async def delivery_worker() -> DeliveryWorker:
    """This process's delivery worker, created on first use."""
    global _worker
    if _worker is None:
        pool = await get_pool(settings.postgres_dsn)
        system_pool = await get_system_pool(settings.postgres_system_dsn)
        _worker = DeliveryWorker(
            pool,
            config,
            settings.artifact_dir,
            sources=(ScheduleDeliveries(), AdhocDeliveries()),
            system_pool=system_pool,
            keys=await get_keyring(settings.postgres_dsn),
        )
    return _worker


async def handle_report_result(raw: bytes) -> str | None:
    """Queue the delivery of one ``report-results`` message if a schedule run or the report's
    own request asked for one.

    Returns:
        ``"queued"``, or None when there is nothing to deliver (or it is already queued).
    """
    try:
        status = decode_event(raw, ReportStatus)
    except EventValidationError:
        log.exception("unreadable report-results message skipped")
        return None
    if not settings.scheduling_enabled:
        return None
    worker = await delivery_worker()
    return "queued" if await worker.enqueue_report(status) else None


@app.agent(report_results_topic, concurrency=4)
async def delivery_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``report-results`` for ever (see the module docstring)."""
    async for event in stream.events():  # type: ignore[attr-defined]
        await handle_until_done(
            partial(handle_report_result, event.message.value or b""),
            f"delivery of report-results offset {event.message.offset}",
        )


@app.task  # type: ignore[untyped-decorator]
async def run_delivery_worker() -> None:
    """Attempt due deliveries until the worker stops (see the module docstring)."""
    if not settings.scheduling_enabled:
        return
    worker = await delivery_worker()
    stop = asyncio.Event()
    try:
        await worker.run(stop)
    finally:
        stop.set()
