"""Schedule runs as a delivery source: which reports a run delivers, and its status after.

:class:`ScheduleDeliveries` is the :class:`~stream_app.delivery.worker.DeliverySource` of
scheduled reports: a final status of a report a run planned becomes a
:class:`~stream_app.delivery.base.DeliveryOrder` (the schedule's target, retry policy and
``skip_if_empty``, the audience's recipients and filters), and each outcome the dispatcher
logs settles the run (:func:`settle_run`), in the same transaction.

Run status after delivery: ``failed`` as soon as one of its reports fails (sticky, with the
cause); ``retrying`` while a report waits for its next attempt; once every planned report is
``delivered`` or ``skipped``, the run is ``delivered`` (if any was delivered) or ``skipped``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import asyncpg

from stream_app.delivery.base import DeliveryMethod, DeliveryOrder, DeliveryResult
from stream_app.delivery.dispatch import deliver
from stream_app.delivery.log import final_outcomes
from stream_app.delivery.queue import QueuedDelivery
from stream_app.schedules.store import ClaimedRun, find_run_for_report, get_run, update_run_status
from stream_app.schemas.updates import ReportStatus

SOURCE: Final = "schedule"
"""The :class:`~stream_app.delivery.worker.DeliverySource` name of scheduled deliveries."""


def order_for_run(run: ClaimedRun, report_id: str) -> DeliveryOrder:
    """The delivery of planned report ``report_id`` of ``run``.

    Raises:
        ValueError: the run did not plan ``report_id``.
    """
    try:
        planned = run.planned(report_id)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from exc
    schedule = run.schedule
    return DeliveryOrder(
        source=SOURCE,
        organization_id=schedule.organization_id,
        report_id=planned.report_id,
        report_type=schedule.report_type,
        target=schedule.delivery,
        secrets_owner=schedule.schedule_id,
        retry=schedule.retry,
        date_from=run.date_from,
        date_to=run.date_to,
        fire_time=run.fire_time,
        recipients=planned.audience.recipients,
        filters=planned.audience.filters,
        skip_if_empty=schedule.skip_if_empty,
        schedule_id=schedule.schedule_id,
        run_id=run.run_id,
    )


async def settle_run(
    conn: asyncpg.Connection, order: DeliveryOrder, result: DeliveryResult
) -> None:
    """Set the status of the run that ordered ``order`` after ``result`` (see the module
    docstring); in the organisation's tenant transaction that logged the outcome."""
    org, run_id = order.organization_id, order.run_id
    if run_id is None:
        return
    if result.outcome == "failed":
        await update_run_status(conn, org, run_id, "failed", error=result.detail)
        return
    row = await conn.fetchrow(
        "SELECT status, report_ids FROM schedule_runs WHERE organization_id = $1 AND id = $2"
        " FOR UPDATE",
        org,
        run_id,
    )
    if row is None or row["status"] == "failed":
        return
    current = row["status"]
    outcomes = await final_outcomes(conn, org, run_id)
    finals = [outcomes.get(report_id) for report_id in row["report_ids"]]
    retry_queued = await conn.fetchval(
        "SELECT 1 FROM delivery_queue WHERE organization_id = $1 AND run_id = $2 AND attempt > 1",
        org,
        run_id,
    )
    if all(o in ("delivered", "skipped") for o in finals):
        status = "delivered" if "delivered" in finals else "skipped"
        await update_run_status(conn, org, run_id, status)
    elif current != "retrying" and retry_queued:
        await update_run_status(conn, org, run_id, "retrying")
    elif current == "retrying" and not retry_queued:
        await update_run_status(conn, org, run_id, "submitted")


class ScheduleDeliveries:
    """The :class:`~stream_app.delivery.worker.DeliverySource` of schedule runs."""

    name: str = SOURCE

    async def order_for(
        self, conn: asyncpg.Connection, status: ReportStatus
    ) -> DeliveryOrder | None:
        """The delivery of a report a run planned (any final status: a failed report fails
        its run), or None."""
        run = await find_run_for_report(conn, status.organization_id, status.report_id)
        return None if run is None else order_for_run(run, status.report_id)

    async def reload(self, conn: asyncpg.Connection, item: QueuedDelivery) -> DeliveryOrder | None:
        """The order of a queued row, from its run (None once the schedule was deleted)."""
        run = None if item.run_id is None else await get_run(conn, item.run_id)
        return None if run is None else order_for_run(run, item.report_id)

    async def settle(
        self, conn: asyncpg.Connection, order: DeliveryOrder, result: DeliveryResult
    ) -> None:
        """:func:`settle_run`."""
        await settle_run(conn, order, result)


async def deliver_run(
    pool: asyncpg.Pool,
    run: ClaimedRun,
    status: ReportStatus,
    artifact_root: Path,
    method: DeliveryMethod,
    **options: Any,
) -> DeliveryResult:
    """Attempt the delivery of one finished report of ``run`` and settle the run:
    :func:`stream_app.delivery.dispatch.deliver` of :func:`order_for_run` with
    :func:`settle_run` (``options``: its ``attempt``, ``now`` and ``keys``).

    Raises:
        ValueError: ``status`` is not final or names a report the run did not plan.
    """
    order = order_for_run(run, status.report_id)
    return await deliver(pool, order, status, artifact_root, method, settle=settle_run, **options)
