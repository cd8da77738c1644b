"""A fired schedule is an audit event of its organisation, with the run and its report ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from stream_app.db.audit_events import list_events, verify_chains
from stream_app.schedules.runner import run_scheduler_tick
from stream_app.schedules.store import create_schedule
from stream_app.schemas.reports import ReportRequest
from tests.schedules.builders import schedule


async def test_a_fired_run_is_audited(db: asyncpg.Pool, new_org: Any) -> None:
    org = await new_org()
    fired = schedule(org, f"fired-{org}", cron="0 8 1 * *", time_zone="Europe/London")
    async with db.acquire() as conn:
        await create_schedule(conn, fired, datetime(2031, 3, 20, tzinfo=UTC))
    sent: list[ReportRequest] = []

    async def submit(req: ReportRequest) -> None:
        sent.append(req)

    (run,) = await run_scheduler_tick(db, datetime(2031, 4, 1, 7, 0, 5, tzinfo=UTC), submit)
    async with db.acquire() as conn:
        [event] = await list_events(conn, org)
        [report] = await verify_chains(conn, org)
    assert (event.actor, event.action, event.target) == (
        "scheduler",
        "schedule.fired",
        f"fired-{org}",
    )
    assert event.details == {
        "run_id": run.run_id,
        "fire_time": "2031-04-01T07:00:00+00:00",
        "missed_from": "2031-04-01T07:00:00+00:00",
        "report_ids": [r.report_id for r in sent],
        "requested_for": "user-1",
    }
    assert report.fault is None and report.rows_checked == 1
