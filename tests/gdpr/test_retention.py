"""The retention job against the real PostgreSQL: one run per interval across claimers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.gdpr.retention import RetentionRule, run_once, slot_start, store_rule
from stream_app.settings import Settings


def test_every_worker_computes_the_same_interval() -> None:
    t = datetime(2026, 12, 5, 7, 0, 59, tzinfo=UTC)
    assert slot_start(t, 60) == datetime(2026, 12, 5, 7, 0, tzinfo=UTC)
    assert slot_start(t + timedelta(seconds=1), 60) == datetime(2026, 12, 5, 7, 1, tzinfo=UTC)
    assert slot_start(t, 3600) == datetime(2026, 12, 5, 7, 0, tzinfo=UTC)


async def test_two_concurrent_claimers_apply_an_interval_once(
    settings: Settings, tmp_path: Path
) -> None:
    org = f"ret-{uuid.uuid4().hex[:8]}"
    # an interval no worker of the session uses: far in the past
    now = datetime(2001, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 10**6)
    pools = [await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2) for _ in "ab"]
    try:
        async with pools[0].acquire() as conn:
            await upsert_organization(conn, Organization(org, "R", "Europe/Lisbon", "EUR"))
            for days in (10, 3):
                at = now - timedelta(days=days)
                await conn.execute(
                    "INSERT INTO delivery_log (schedule_id, organization_id, report_id, method,"
                    " attempt, outcome, started_at, finished_at)"
                    " VALUES ('s', $1, 'r', 'api', 1, 'delivered', $2, $2)",
                    org,
                    at,
                )
            await store_rule(conn, org, RetentionRule(delivery_log_days=7), "admin")
        results = await asyncio.gather(
            *(run_once(p, tmp_path, f"w{i}", 60.0, now) for i, p in enumerate(pools))
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1 and winners[0][org]["delivery_log_rows"] == 1
        async with pools[0].acquire() as conn:
            left = await conn.fetch(
                "SELECT finished_at FROM delivery_log WHERE organization_id = $1", org
            )
            assert [r["finished_at"] for r in left] == [now - timedelta(days=3)]
            audits = await conn.fetch(
                "SELECT target, details FROM audit_log WHERE organization_id = $1"
                " AND action = 'retention.run'",
                org,
            )
            assert [a["target"] for a in audits] == [slot_start(now, 60).isoformat()]
            assert orjson.loads(audits[0]["details"])["delivery_log_rows"] == 1
            run = await conn.fetchrow(
                "SELECT claimed_by, finished_at FROM retention_runs WHERE slot_start = $1",
                slot_start(now, 60),
            )
            # the worker whose run_once returned the counts claimed the slot, and finished it
            assert run["claimed_by"] == f"w{results.index(winners[0])}"
            assert run["finished_at"] <= await conn.fetchval("SELECT now()")
        # the same interval again: nothing runs
        assert await run_once(pools[1], tmp_path, "w1", 60.0, now) is None
    finally:
        for p in pools:
            await p.close()
