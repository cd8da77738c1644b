"""The scheduler: claim due runs and submit their report requests.

Any number of workers may run :func:`scheduler_loop` against one database; the claiming
protocol of :mod:`stream_app.schedules.store` gives exactly one run per fire time. A run's
reports are submitted through an injected ``submit`` callable (in production: produce the
request to ``report-requests``), then the run becomes ``submitted`` and a ``schedule.fired``
audit event lists its report ids (the report agent records each request as it arrives). A
worker that dies between claim and submission leaves the run ``claimed``; any worker
re-submits it after ``resubmit_after_s`` seconds (safe: the run row holds its report ids, and
the report agent does not generate a known (organisation, id) twice). A run ``submitted`` more
than ``submitted_timeout_s`` seconds ago whose reports have not all reached a delivery outcome
is marked ``failed`` with the cause, logged and counted
(``wedding_schedule_runs_timed_out_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from stream_app.db import audit_events
from stream_app.observability import SCHEDULE_RUNS_TIMED_OUT
from stream_app.schedules.store import (
    ClaimedRun,
    PlannedReport,
    claim_due_runs,
    fail_stale_submitted_runs,
    mark_submitted,
    reclaim_stale_runs,
)
from stream_app.schemas.reports import ReportRequest

log = logging.getLogger(__name__)

Submit = Callable[[ReportRequest], Awaitable[None]]
"""Sends one report request (e.g. produces it to ``report-requests`` and awaits the ack)."""

DEFAULT_RESUBMIT_AFTER_S = 300.0
DEFAULT_SUBMITTED_TIMEOUT_S = 3600.0
"""Seconds a run may stay ``submitted`` with reports lacking an outcome (see the settings'
``schedule_run_timeout_s``)."""

SCHEDULER_ACTOR = "scheduler"
"""The actor of ``schedule.fired`` audit events (a run's requests were submitted)."""


def build_request(run: ClaimedRun, planned: PlannedReport, now: datetime) -> ReportRequest:
    """The report request of one planned report of ``run``, requested at ``now`` (UTC).

    The request carries the run's ``cache_strategy`` (always ``skip``: fresh data) and the
    audience's filters as ``data_filters`` (each recipient group gets its own report).
    """
    schedule = run.schedule
    return ReportRequest(
        schema_version=1,
        report_id=planned.report_id,
        organization_id=schedule.organization_id,
        user_id=schedule.created_by,
        report_type=schedule.report_type,
        date_from=run.date_from,
        date_to=run.date_to,
        output_formats=list(schedule.output_formats),
        requested_at=now.astimezone(UTC),
        priority=schedule.priority,
        data_filters={field: list(values) for field, values in planned.audience.filters},
        cache_strategy="skip",
    )


async def run_scheduler_tick(
    pool: asyncpg.Pool,
    now: datetime,
    submit: Submit,
    *,
    worker_id: str | None = None,
    resubmit_after_s: float = DEFAULT_RESUBMIT_AFTER_S,
    submitted_timeout_s: float = DEFAULT_SUBMITTED_TIMEOUT_S,
) -> list[ClaimedRun]:
    """Claim the runs due at ``now`` and submit their report requests; fail stale runs.

    Cross-tenant: the scheduler's own connection, no tenant transaction.

    Args:
        pool: PostgreSQL pool (scheduler role, not tenant-scoped).
        now: the current time, UTC-aware (injected: tests simulate time with it).
        submit: sends one :class:`ReportRequest`; awaited once per planned report.
        worker_id: recorded as the runs' ``claimed_by`` (default ``host:pid``).
        resubmit_after_s: runs left ``claimed`` this many seconds are taken over and
            re-submitted.
        submitted_timeout_s: runs ``submitted`` this many seconds ago with a report that has
            no delivery outcome are marked ``failed`` (logged, counted).

    Returns:
        The runs whose requests were all submitted by this call (status ``submitted``), by
        fire time. A run whose ``submit`` raised stays ``claimed`` (logged) and is re-submitted
        by a later tick after ``resubmit_after_s``.

    Raises:
        asyncpg.PostgresError, OSError: the database is unreachable or a query failed.
    """
    async with pool.acquire() as conn:
        runs = await claim_due_runs(conn, now, worker_id=worker_id)
        runs += await reclaim_stale_runs(
            conn, now, older_than_s=resubmit_after_s, worker_id=worker_id
        )
        for stale in await fail_stale_submitted_runs(conn, now, older_than_s=submitted_timeout_s):
            SCHEDULE_RUNS_TIMED_OUT.inc()
            log.error(
                "schedule %s/%s: run %s failed: %s",
                stale.organization_id,
                stale.schedule_id,
                stale.run_id,
                stale.error,
            )
    submitted: list[ClaimedRun] = []
    for run in runs:
        try:
            for planned in run.reports:
                await submit(build_request(run, planned, now))
        except Exception:  # logged; one failed submission must not stop the others
            log.exception(
                "schedule %s: submitting run %s (fire time %s) failed; it stays claimed",
                run.schedule.schedule_id,
                run.run_id,
                run.fire_time.isoformat(),
            )
            continue
        async with pool.acquire() as conn, conn.transaction():
            if await mark_submitted(conn, run.run_id, now):
                await audit_events.record(
                    conn,
                    run.schedule.organization_id,
                    SCHEDULER_ACTOR,
                    "schedule.fired",
                    run.schedule.schedule_id,
                    {
                        "run_id": run.run_id,
                        "fire_time": run.fire_time.isoformat(),
                        "missed_from": run.missed_from.isoformat(),
                        "report_ids": [p.report_id for p in run.reports],
                        "requested_for": run.schedule.created_by,
                    },
                )
        submitted.append(replace(run, status="submitted"))
    return submitted


async def scheduler_loop(
    pool: asyncpg.Pool,
    submit: Submit,
    interval_s: float,
    stop_event: asyncio.Event,
    *,
    worker_id: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    submitted_timeout_s: float = DEFAULT_SUBMITTED_TIMEOUT_S,
) -> None:
    """Run :func:`run_scheduler_tick` every ``interval_s`` seconds until ``stop_event`` is set.

    A failing tick (database down, a bug) is logged and the loop goes on; the next tick
    catches up what was missed (one run per schedule for the missed period).

    Args:
        pool: PostgreSQL pool.
        submit: see :func:`run_scheduler_tick`.
        interval_s: seconds between ticks (> 0); fire times are claimed up to this late.
        stop_event: set it to stop the loop after the current tick.
        worker_id: see :func:`run_scheduler_tick`.
        clock: returns the current UTC time.
        submitted_timeout_s: see :func:`run_scheduler_tick`.

    Raises:
        ValueError: ``interval_s`` is not positive.
    """
    if interval_s <= 0:
        raise ValueError("interval_s: must be positive")
    while not stop_event.is_set():
        try:
            await run_scheduler_tick(
                pool,
                clock(),
                submit,
                worker_id=worker_id,
                submitted_timeout_s=submitted_timeout_s,
            )
        except Exception:  # logged; the loop must outlive a failed tick
            log.exception("scheduler tick failed; retrying in %.1f s", interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=interval_s)
