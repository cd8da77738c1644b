"""Cancelling a report (HTTP ``POST …/cancel``, ``wedding-engine cancel``).

Part of the reports layer. PostgreSQL moves a ``queued`` or ``processing`` report to
``cancelled`` and the canceller publishes ``cancelled``. A queued report is then never
claimed. A running one is stopped: at once when it runs on the worker that took the cancel
(its task is cancelled, see :data:`running`), else within
:attr:`Settings.report_cancel_poll_s` by its watchdog (:mod:`stream_app.reports.watchdog`);
the render thread stops before the next format, and the report's files are deleted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.observability import REPORTS
from stream_app.reports.cancelling import cancel_in_db
from stream_app.reports.status import publish_status

running: dict[tuple[str, str], tuple[asyncio.Task[Any], threading.Event]] = {}
"""Reports generating on this worker, by ``(organization_id, report_id)``: the task and the
stop flag of its render thread."""


@contextmanager
def tracked(
    organization_id: str, report_id: str, task: asyncio.Task[Any], stop: threading.Event
) -> Iterator[None]:
    """Register ``task`` (and its render thread's ``stop`` flag) in :data:`running` while the
    block runs, so a cancel taken by this worker stops it at once."""
    running[(organization_id, report_id)] = (task, stop)
    try:
        yield
    finally:
        running.pop((organization_id, report_id), None)


async def cancel_report(
    organization_id: str, report_id: str, *, actor: str = "system", owner: str | None = None
) -> str | None:
    """Cancel a queued or running report of ``organization_id`` (see the module docstring).

    ``actor`` (who asked) is recorded in the audit log with the cancellation (again for a
    repeated cancel: :func:`stream_app.db.reports.cancel` answers ``cancelled`` for both).

    Returns:
        ``"cancelled"`` when this call cancelled it (and published ``cancelled``), else the
        report's final status (``completed``, ``failed``, ``cancelled``), or None when the
        organisation has no such report; with ``owner``, only a report that user requested
        is cancelled (:data:`stream_app.db.reports.NOT_THE_OWNERS` for another's).
    """
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        outcome, status = await cancel_in_db(
            conn, organization_id, report_id, actor=actor, owner=owner
        )
    if status is None:
        return outcome
    found = running.get((organization_id, report_id))
    if found is not None:
        found[1].set()
        found[0].cancel()
    await publish_status(status)
    REPORTS.labels(status.report_type, "cancelled").inc()
    return "cancelled"
