"""The delivery agent: delivers the finished reports of scheduled runs.

Consumes ``report-results``; for each final status (``completed``, ``failed``,
``cancelled``) of a report that a schedule run planned, it delivers the files with the
schedule's method and retry policy (:func:`stream_app.delivery.dispatch.deliver`), which logs
every attempt and settles the run. Kafka's at-least-once delivery of ``report-results`` plus
the delivery log (a report already delivered for a run is not sent again) make each report
reach its destination once. Several deliveries run at once (``concurrency``), so one slow
endpoint in its backoff does not hold up the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterable
from typing import Any

from stream_app.app import app, settings
from stream_app.crypto.keyring import get_keyring
from stream_app.db.pool import get_pool
from stream_app.delivery.dispatch import build_method, deliver, load_delivery_config
from stream_app.reports.agent import report_results_topic
from stream_app.schedules.store import find_run_for_report
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.updates import ReportStatus

log = logging.getLogger(__name__)
FINAL = frozenset({"completed", "failed", "cancelled"})
config = load_delivery_config(
    {
        "WEDDING_PUBLIC_BASE_URL": f"http://{settings.web_host}:{settings.web_port}",
        **os.environ,
    },
    fallback_secret=settings.jwt_secret,
)


async def handle_report_result(raw: bytes) -> str | None:
    """Deliver the report of one ``report-results`` message if a schedule run planned it.

    Returns:
        The delivery outcome, or None when there is nothing to deliver.
    """
    try:
        status = decode_event(raw, ReportStatus)
    except EventValidationError:
        log.exception("unreadable report-results message skipped")
        return None
    if status.status not in FINAL or not settings.scheduling_enabled:
        return None
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        run = await find_run_for_report(conn, status.report_id)
    if run is None:
        return None
    method = build_method(run.schedule.delivery, config)
    keys = await get_keyring(settings.postgres_dsn)
    result = await deliver(pool, run, status, settings.artifact_dir, method, keys=keys)
    return str(result.outcome)


@app.agent(report_results_topic, concurrency=4)
async def delivery_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``report-results`` for ever (see the module docstring)."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            await handle_report_result(event.message.value or b"")
        except Exception:
            log.exception("delivery of report-results offset %s failed", event.message.offset)
