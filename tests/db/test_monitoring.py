"""Query monitoring in a real PostgreSQL: the histogram, the slow-query plan log and counter,
the query log and its tenant isolation.

Metrics are read from the Prometheus text the ``/metrics`` route serves
(``generate_latest(REGISTRY)``), parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import orjson
import pytest
import pytest_asyncio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.aggregation import aggregate
from stream_app.db import monitoring
from stream_app.db.tenancy import Organization, tenant_transaction, upsert_organization
from stream_app.observability import REGISTRY

BOOKINGS = [(f"b{i}", 1000 + i) for i in range(7)]
"""(id, amount_minor) of organisation A's bookings; B has 3."""


def sample(name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` in the /metrics text (0 when absent)."""
    text = generate_latest(REGISTRY).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


@pytest_asyncio.fixture
async def orgs(pg_pool: asyncpg.Pool) -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    a, b = f"qm-a-{suffix}", f"qm-b-{suffix}"
    async with pg_pool.acquire() as conn:
        for org, n in ((a, 7), (b, 3)):
            await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
            await conn.executemany(
                "INSERT INTO bookings (organization_id, id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, $2, $3, $4, $5, 'EUR', 'booked')",
                [
                    (org, i, date(2026, 6, 1), datetime(2026, 1, 1, tzinfo=UTC), amount)
                    for i, amount in BOOKINGS[:n]
                ],
            )
    yield a, b
    async with pg_pool.acquire() as conn:
        await conn.execute("DELETE FROM organizations WHERE id = ANY($1)", [a, b])


COUNT = {
    "dataset": "bookings",
    "metrics": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
}


async def log_rows(pool: asyncpg.Pool, org: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        return list(
            await conn.fetch(
                "SELECT organization_id, kind, dataset, rows, slow, duration_ms FROM query_log"
                " ORDER BY duration_ms DESC"
            )
        )


async def test_an_aggregation_is_timed_with_its_labels_and_logged(
    pg_pool: asyncpg.Pool, orgs: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEDDING_SLOW_QUERY_S", "5")
    a, _ = orgs
    labels = {"kind": "aggregation", "dataset": "bookings"}
    before = sample("wedding_query_seconds_count", **labels)
    inf_before = sample("wedding_query_seconds_bucket", le="+Inf", **labels)
    slow_before = sample("wedding_slow_queries_total", **labels)
    result = await aggregate(pg_pool, a, COUNT)
    assert result.rows == [
        {"currency": "EUR", "count": 7, "sum_amount_minor": sum(m for _, m in BOOKINGS)}
    ]
    assert sample("wedding_query_seconds_count", **labels) == before + 1
    assert sample("wedding_query_seconds_bucket", le="+Inf", **labels) == inf_before + 1
    assert sample("wedding_slow_queries_total", **labels) == slow_before  # 5 s: not slow
    # no tenant id and no SQL text among the label values
    text = generate_latest(REGISTRY).decode()
    assert a not in text and "SELECT" not in text
    rows = await log_rows(pg_pool, a)
    assert [(r["kind"], r["dataset"], r["rows"], r["slow"]) for r in rows] == [
        ("aggregation", "bookings", 1, False)
    ]


async def test_a_slow_query_is_logged_with_its_plan_and_counted(
    pg_pool: asyncpg.Pool,
    orgs: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WEDDING_SLOW_QUERY_S", "0.2")
    a, _ = orgs
    labels = {"kind": "report", "dataset": "compliance"}
    slow_before = sample("wedding_slow_queries_total", **labels)
    count_before = sample("wedding_query_seconds_count", **labels)
    sleepy = (
        "SELECT pg_sleep(0.3), count(*) AS n FROM bookings"
        " WHERE organization_id = $1 AND amount_minor > $2"
    )
    fast = "SELECT count(*) AS n FROM bookings WHERE organization_id = $1"
    caplog.set_level(logging.WARNING, logger="stream_app.db.monitoring")
    async with pg_pool.acquire() as conn, tenant_transaction(conn, a):
        slow_rows = await monitoring.fetch(conn, a, "report", "compliance", sleepy, a, 1002)
        fast_rows = await monitoring.fetch(conn, a, "report", "compliance", fast, a)
    assert (slow_rows[0]["n"], fast_rows[0]["n"]) == (4, 7)  # amounts 1003..1006; all 7
    assert sample("wedding_slow_queries_total", **labels) == slow_before + 1
    assert sample("wedding_query_seconds_count", **labels) == count_before + 2
    logged = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == monitoring.__name__]
    assert len(logged) == 1
    entry = logged[0]
    assert entry["event"] == "slow_query"
    assert (entry["organization_id"], entry["kind"], entry["dataset"]) == (
        a,
        "report",
        "compliance",
    )
    assert entry["duration_ms"] >= 300 and entry["threshold_s"] == 0.2
    assert entry["sql"] == sleepy and entry["query_id"] == monitoring.fingerprint(sleepy)
    plan = entry["plan"][0]["Plan"]  # EXPLAIN (FORMAT JSON): a list holding {"Plan": ...}
    assert plan["Node Type"] == "Aggregate"
    assert "Actual Rows" not in plan  # not ANALYZE: the statement was not run again
    # the generic plan: parameters as $n, never their values (no tenant data in the log)
    plan_text = orjson.dumps(entry["plan"]).decode()
    assert "$1" in plan_text and "$2" in plan_text
    assert a not in plan_text and "1002" not in plan_text
    rows = await log_rows(pg_pool, a)
    assert [(r["slow"], r["rows"]) for r in rows] == [(True, 1), (False, 1)]
    assert rows[0]["duration_ms"] >= 300 > rows[1]["duration_ms"]


async def test_every_aggregation_is_explained_when_the_threshold_is_zero(
    pg_pool: asyncpg.Pool,
    orgs: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("WEDDING_SLOW_QUERY_S", "0")
    a, _ = orgs
    labels = {"kind": "aggregation", "dataset": "bookings"}
    slow_before = sample("wedding_slow_queries_total", **labels)
    caplog.set_level(logging.WARNING, logger="stream_app.db.monitoring")
    result = await aggregate(pg_pool, a, COUNT)
    assert result.rows[0]["count"] == 7  # the transaction is intact after the EXPLAIN
    assert sample("wedding_slow_queries_total", **labels) == slow_before + 1
    (entry,) = [
        orjson.loads(r.getMessage()) for r in caplog.records if r.name == monitoring.__name__
    ]
    assert entry["dataset"] == "bookings" and "Plan" in entry["plan"][0]


async def test_the_query_log_of_an_organisation_is_its_own(
    pg_pool: asyncpg.Pool, orgs: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEDDING_SLOW_QUERY_S", "5")
    a, b = orgs
    await aggregate(pg_pool, a, COUNT)
    await aggregate(pg_pool, a, COUNT)
    await aggregate(pg_pool, b, COUNT)
    async with pg_pool.acquire() as conn:
        mine = await monitoring.slowest(conn, a, 10)
        theirs = await monitoring.slowest(conn, b, 10)
        top = await monitoring.slowest(conn, a, 1)
    assert [(q.kind, q.dataset, q.rows) for q in mine] == [("aggregation", "bookings", 1)] * 2
    assert [(q.kind, q.dataset) for q in theirs] == [("aggregation", "bookings")]
    assert mine[0].duration_ms >= mine[1].duration_ms and top == mine[:1]
    # row-level security: inside A's scope, B's rows do not exist even without a predicate
    async with pg_pool.acquire() as conn, tenant_transaction(conn, a):
        seen = await conn.fetch("SELECT DISTINCT organization_id FROM query_log")
    assert [r["organization_id"] for r in seen] == [a]


async def test_label_values_are_bounded(pg_pool: asyncpg.Pool, orgs: tuple[str, str]) -> None:
    a, _ = orgs
    async with pg_pool.acquire() as conn, tenant_transaction(conn, a):
        with pytest.raises(ValueError, match="kind: 'tenant'"):
            await monitoring.fetch(conn, a, "tenant", "bookings", "SELECT 1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="dataset: 'qm-a"):
            await monitoring.fetch(conn, a, "report", a, "SELECT 1")
