"""The recovery sweep's choice (:func:`stream_app.reports.recovery.take_stalled`), on a real
PostgreSQL: which reports it sends round again and which it leaves waiting; and the sweep
(:func:`~stream_app.reports.recovery.sweep_once`) on a real Kafka: a request Kafka refuses
fails its report only.

A report whose request reached its lane waits its turn there; sending it again only adds
copies behind a tenant's flood (an attacker's 400 requests once became 861 lane messages).
"""

from __future__ import annotations

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from stream_app.db import reports as report_db
from stream_app.db.tenancy import tenant_transaction
from stream_app.reports.recovery import sweep_once, take_stalled
from stream_app.settings import Settings
from tests.conftest import NewOrg

# (report id, status, seconds since updated_at, seconds since routed_at or None)
ROWS = [
    ("never-routed", "queued", 40, None),  # the broker went away before the lane had it
    ("routed-waiting", "queued", 40, 40),  # in its lane behind others: left alone
    ("routed-long-ago", "queued", 1000, 1000),  # past the safety horizon
    ("just-queued", "queued", 5, None),
    ("worker-died", "processing", 20, 30),  # heartbeat older than 15 s
    ("running", "processing", 1, 30),
    ("done", "completed", 2000, None),
]


async def _insert(conn: asyncpg.Connection, org: str) -> None:
    for report_id, status, updated_s, routed_s in ROWS:
        request = {"report_id": report_id, "organization_id": org}
        async with tenant_transaction(conn, org):
            assert await report_db.insert_queued(
                conn, report_id=report_id, organization_id=org, user_id="tester",
                report_type="monthly_booking_summary", request=request, cache_key=report_id,
            )  # fmt: skip
        await conn.execute(
            "UPDATE reports SET status = $3, updated_at = now() - make_interval(secs => $4),"
            " routed_at = now() - make_interval(secs => $5)"
            " WHERE organization_id = $1 AND id = $2",
            org,
            report_id,
            status,
            float(updated_s),
            None if routed_s is None else float(routed_s),
        )


async def _take(conn: asyncpg.Connection, org: str) -> set[str]:
    async with conn.transaction():
        taken = await take_stalled(conn, processing_stale_s=15, queued_stale_s=30, limit=10_000)
    return {r.report_id for r in taken if r.organization_id == org}


async def test_sweep_sends_round_the_unrouted_and_dead_not_those_waiting_in_a_lane(
    pg_pool: asyncpg.Pool, new_org: NewOrg
) -> None:
    org = await new_org()
    async with pg_pool.acquire() as conn:
        await _insert(conn, org)
        assert await _take(conn, org) == {"never-routed", "routed-long-ago", "worker-died"}
        rows = {
            r["id"]: (r["fresh"], r["routed"])
            for r in await conn.fetch(
                "SELECT id, updated_at > now() - interval '5 seconds' AS fresh,"
                " routed_at IS NOT NULL AS routed FROM reports WHERE organization_id = $1",
                org,
            )
        }
        # the queued ones taken are marked as sent now and not routed (until the copy is
        # acknowledged), so the next sweep does not take them again; the others are unchanged
        assert rows["never-routed"] == (True, False)
        assert rows["routed-long-ago"] == (True, False)
        assert rows["routed-waiting"] == (False, True)
        assert rows["worker-died"] == (False, True)
        # a second sweep: only the dead worker's report again (until a lane claims it)
        assert await _take(conn, org) == {"worker-died"}


async def test_sweep_marks_a_request_kafka_refuses_failed_and_still_sends_the_next(
    pg_pool: asyncpg.Pool, new_org: NewOrg, settings: Settings
) -> None:
    org = await new_org()
    # two stalled reports, the older first in the sweep's order: its stored request is over
    # Kafka's message limit (1 MiB), the other is an ordinary one
    stalled = [("unsendable", 2 * 86400, "x" * 1_200_000), ("recoverable", 86400, "")]
    async with pg_pool.acquire() as conn:
        for report_id, age_s, pad in stalled:
            request = {"report_id": report_id, "organization_id": org, "pad": pad}
            async with tenant_transaction(conn, org):
                assert await report_db.insert_queued(
                    conn, report_id=report_id, organization_id=org, user_id="tester",
                    report_type="monthly_booking_summary", request=request, cache_key=report_id,
                )  # fmt: skip
            await conn.execute(
                "UPDATE reports SET updated_at = now() - make_interval(secs => $3)"
                " WHERE organization_id = $1 AND id = $2",
                org,
                report_id,
                float(age_s),
            )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    sent: list[str] = []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        await producer.send_and_wait(topic, value, key=key)
        sent.append(orjson.loads(value)["report_id"])

    try:
        await sweep_once(pg_pool, send)
    finally:
        await producer.stop()
    assert "recoverable" in sent and "unsendable" not in sent
    async with pg_pool.acquire() as conn:
        rows = {
            r["id"]: (r["status"], r["error"], r["routed"])
            for r in await conn.fetch(
                "SELECT id, status, error, routed_at IS NOT NULL AS routed FROM reports"
                " WHERE organization_id = $1",
                org,
            )
        }
        audited = await conn.fetch(
            "SELECT target, outcome, details::text AS details FROM audit_log"
            " WHERE organization_id = $1 AND action = 'report.status'",
            org,
        )
    assert [(a["target"], a["outcome"]) for a in audited] == [("unsendable", "failed")]
    assert orjson.loads(audited[0]["details"])["status"] == "failed"
    status, error, _ = rows["unsendable"]
    assert status == "failed"
    assert "MessageSizeTooLargeError" in error
    assert rows["recoverable"] == ("queued", None, True)  # in its lane again: routed
