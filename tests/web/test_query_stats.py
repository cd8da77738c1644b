"""``GET /orgs/{org}/query-stats`` and ``/metrics`` through a real worker.

Two organisations run aggregations over HTTP (3 and 1); each admin sees exactly its own
queries; a viewer and another organisation's admin are refused; the worker's ``/metrics``
histogram counted exactly the aggregations posted, under bounded labels.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from stream_app.db.monitoring import fingerprint
from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.reports.types import compliance
from stream_app.settings import Settings
from stream_app.web.auth import issue_token
from tests.e2e.helpers import request_report_http

BODY = {"dataset": "bookings", "metrics": [{"op": "count"}]}


def bearer(settings: Settings, org: str, role: str) -> dict[str, str]:
    token = issue_token(
        settings.jwt_secret, user_id=f"{role}-qs", organization_id=org, ttl_seconds=600, role=role
    )
    return {"Authorization": f"Bearer {token}"}


async def histogram_count(s: aiohttp.ClientSession) -> float:
    async with s.get("/metrics") as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wedding_query_seconds_count" and sample.labels == {
                "kind": "aggregation",
                "dataset": "bookings",
            }:
                return float(sample.value)
    return 0.0


async def get(s: aiohttp.ClientSession, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with s.get(path, headers=headers) as r:
        return r.status, await r.json()


async def test_each_admin_sees_its_own_queries_only(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    suffix = uuid.uuid4().hex[:8]
    a, b = f"qs-a-{suffix}", f"qs-b-{suffix}"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (a, b):
            await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
    finally:
        await conn.close()
    async with aiohttp.ClientSession(main_worker.url) as s:
        before = await histogram_count(s)
        for org, n in ((a, 3), (b, 1)):
            for _ in range(n):
                path = f"/orgs/{org}/aggregations"
                async with s.post(path, json=BODY, headers=bearer(settings, org, "analyst")) as r:
                    assert r.status == 200, await r.text()
        assert await histogram_count(s) == before + 4

        status, body = await get(s, f"/orgs/{a}/query-stats", bearer(settings, a, "admin"))
        assert status == 200, body
        assert body["organization_id"] == a and body["slow_query_s"] == 5.0
        assert [(q["kind"], q["dataset"], q["rows"], q["slow"]) for q in body["queries"]] == [
            ("aggregation", "bookings", 1, False)
        ] * 3
        ms = [q["ms"] for q in body["queries"]]
        assert ms == sorted(ms, reverse=True) and all(m > 0 for m in ms)

        status, body = await get(s, f"/orgs/{b}/query-stats?limit=5", bearer(settings, b, "admin"))
        assert status == 200 and len(body["queries"]) == 1, body

        status, body = await get(s, f"/orgs/{a}/query-stats?limit=2", bearer(settings, a, "admin"))
        assert (status, len(body["queries"])) == (200, 2)

        # refused: a viewer, an analyst, another organisation's admin, a bad limit
        for role in ("viewer", "analyst"):
            status, body = await get(s, f"/orgs/{a}/query-stats", bearer(settings, a, role))
            assert (status, body["error"]["code"], body["error"]["field"]) == (
                403,
                "forbidden",
                "role",
            ), body
            assert "query-stats:read" in body["error"]["reason"]
        status, body = await get(s, f"/orgs/{a}/query-stats", bearer(settings, b, "admin"))
        assert (status, body["error"]["code"]) == (403, "forbidden")
        status, body = await get(s, f"/orgs/{a}/query-stats?limit=0", bearer(settings, a, "admin"))
        assert (status, body["error"]["field"]) == (400, "limit")


async def test_a_streamed_report_logs_its_queries(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    """A compliance report through the worker: the reconciliation is read through a cursor
    once per format, each reading a logged query with all the organisation's bookings."""
    org = f"qs-r-{uuid.uuid4().hex[:8]}"
    n = 5
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
        await conn.executemany(
            "INSERT INTO bookings (organization_id, id, service_date, booked_at, amount_minor,"
            " currency, status) VALUES ($1, $2, $3, $4, $5, 'EUR', 'booked')",
            [
                (org, f"b{i}", date(2026, 3, 1 + i), datetime(2026, 1, 1, tzinfo=UTC), 100 * i)
                for i in range(n)
            ],
        )
    finally:
        await conn.close()
    body = {
        "report_type": "compliance",
        "date_from": "2026-03-01",
        "date_to": "2026-03-31",
        "output_formats": ["csv", "json"],
    }
    status = await request_report_http(main_worker.url, settings, org, body)
    assert status["status"] == "completed", status
    async with aiohttp.ClientSession(main_worker.url) as s:
        code, stats = await get(
            s, f"/orgs/{org}/query-stats?limit=200", bearer(settings, org, "admin")
        )
    assert code == 200, stats
    reports = [q for q in stats["queries"] if (q["kind"], q["dataset"]) == ("report", "compliance")]
    recon = [q for q in reports if q["query_id"] == fingerprint(compliance.BALANCES_SQL)]
    assert [q["rows"] for q in recon] == [n, n]  # one cursor reading per format
    assert {q["kind"] for q in stats["queries"]} == {"report"}
