"""Every delivery attempt is also an audit event, in the same transaction as its log row."""

from __future__ import annotations

from typing import Any

import asyncpg

from stream_app.db.audit_events import list_events, verify_chains
from stream_app.delivery.api import ApiMethod, LinkSigner
from stream_app.delivery.log import fetch_run_log
from stream_app.delivery.targets import ApiTarget
from tests.delivery.conftest import Deliverer
from tests.schedules.builders import per_org

api_schedule = per_org(
    "audit", output_formats=("csv", "json"), delivery=ApiTarget(link_ttl_seconds=3600)
)


async def test_a_delivery_attempt_is_audited_beside_its_log_row(
    db: asyncpg.Pool, make_run: Any, signer: LinkSigner, delivering: Deliverer
) -> None:
    run, (status,) = await make_run(api_schedule)
    result = await delivering(run, status, ApiMethod(signer))
    assert result.outcome == "delivered"
    org = run.schedule.organization_id
    async with db.acquire() as conn:
        (entry,) = await fetch_run_log(conn, run.run_id)
        events = await list_events(conn, org)
        [report] = await verify_chains(conn, org)
    [event] = [e for e in events if e.action == "delivery.attempt"]
    assert (event.actor, event.target, event.outcome) == ("delivery", status.report_id, "ok")
    assert event.details == {
        "schedule_id": f"audit-{org}",
        "run_id": run.run_id,
        "method": "api",
        "attempt": 1,
        "delivery_outcome": "delivered",
        "retriable": False,
        "delivery_log_id": entry.id,
    }
    assert report.fault is None
