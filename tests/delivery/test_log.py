"""Every delivery attempt is also an audit event, in the same transaction as its log row."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from stream_app.db.audit_events import verify_chains
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
        rows = await conn.fetch(
            "SELECT actor, action, target, details::text AS details, outcome FROM audit_log"
            " WHERE organization_id = $1 AND action = 'delivery.attempt' ORDER BY seq",
            org,
        )
        [report] = await verify_chains(conn, org)
    [row] = rows
    assert (row["actor"], row["target"], row["outcome"]) == ("delivery", status.report_id, "ok")
    assert json.loads(row["details"]) == {
        "schedule_id": f"audit-{org}",
        "run_id": run.run_id,
        "method": "api",
        "attempt": 1,
        "delivery_outcome": "delivered",
        "retriable": False,
        "delivery_log_id": entry.id,
    }
    assert report.fault is None
