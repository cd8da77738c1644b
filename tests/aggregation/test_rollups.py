"""Rollups against the real PostgreSQL: exact equality with the base query over random
requests, freshness after direct SQL edits and a zone change, tenant isolation, and the
optimiser's answer."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from stream_app.aggregation import aggregate, request_from_dict
from stream_app.aggregation.datasets import DATASETS
from stream_app.aggregation.optimizer import optimize
from stream_app.aggregation.rollup_store import (
    RollupNotFoundError,
    create_rollup,
    delete_rollup,
    list_rollups,
)
from stream_app.aggregation.rollups import definition_from_dict, mismatch
from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.tenancy import Organization, tenant_transaction, upsert_organization
from stream_app.settings import Settings

ORG_A, ORG_B = "rollup-a", "rollup-b"
VENUES = ["v1", "v2", "v3", None]
STATUSES = ["booked", "cancelled", "completed", "no_show"]

DEFINITIONS: list[dict[str, Any]] = [
    {
        "dataset": "bookings",
        "dimensions": ["venue_id", "status", "nights"],
        "time_dimension": {"field": "service_date", "grain": "day"},
        "measures": [
            {"op": "count"},
            {"op": "avg", "field": "amount_minor"},
            {"op": "min", "field": "amount_minor"},
            {"op": "max", "field": "amount_minor"},
            {"op": "count", "field": "cancelled_at"},
            {"op": "max", "field": "booked_at"},
        ],
    },
    {
        "dataset": "bookings",
        "dimensions": ["status"],
        "time_dimension": {"field": "booked_at", "grain": "day"},
        "measures": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
    },
    {
        "dataset": "bookings",
        "dimensions": ["venue_id"],
        "time_dimension": {"field": "cancelled_at", "grain": "month"},
        "measures": [{"op": "count"}, {"op": "avg", "field": "nights"}],
    },
    {
        "dataset": "bookings",
        "dimensions": ["venue_id", "currency"],
        "measures": [{"op": "count"}, {"op": "max", "field": "nights"}],
    },
]


def rows(org: str, n: int, seed: int) -> list[BookingRow]:
    """Bookings with NULL venues and cancellations, two currencies, times near midnights."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        booked = datetime(2016, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(600 * 24 * 60))
        cancelled = booked + timedelta(hours=rng.randrange(1, 2000)) if rng.random() < 0.3 else None
        out.append(
            BookingRow(
                organization_id=org,
                id=f"{org}-{i}",
                venue_id=rng.choice(VENUES),
                service_date=date(2016, 1, 1) + timedelta(days=rng.randrange(600)),
                nights=rng.randrange(4),
                booked_at=booked,
                amount_minor=rng.randrange(0, 5_000_000),
                currency=rng.choice(["EUR", "EUR", "USD"]),
                status="cancelled" if cancelled else rng.choice(STATUSES),
                cancelled_at=cancelled,
                source_event_id=None,
            )
        )
    return out


@pytest.fixture(scope="module")
async def rollup_db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """ORG_A (São Paulo) and ORG_B (Auckland), 3,000 bookings each, ORG_A's rollups built."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org, zone, seed in ((ORG_A, "America/Sao_Paulo", 1), (ORG_B, "Pacific/Auckland", 2)):
            await upsert_organization(conn, Organization(org, org, zone, "EUR"))
            await conn.execute("DELETE FROM rollups WHERE organization_id = $1", org)
            await conn.execute("DELETE FROM bookings WHERE organization_id = $1", org)
            await copy_bookings(conn, rows(org, 3000, seed))
        for d in DEFINITIONS:
            await create_rollup(conn, ORG_A, definition_from_dict(d))
        yield conn
    finally:
        await conn.close()


FILTER_VALUES: dict[str, list[Any]] = {
    "venue_id": ["v1", "v2", "v3"],
    "status": STATUSES,
    "currency": ["EUR", "USD"],
    "nights": [0, 1, 2, 3],
}


def random_request(rng: random.Random) -> dict[str, Any]:
    """A request built from one rollup's fields (most match; unaligned ranges do not)."""
    d = rng.choice(DEFINITIONS)
    rollup = definition_from_dict(d)
    dims = list(rollup.dimensions)
    group: list[Any] = rng.sample(dims, rng.randrange(len(dims) + 1))
    time_field = rollup.time_field
    if time_field is not None and rng.random() < 0.7:
        grains = {"day": ["day", "week", "month", "year"], "month": ["month", "year"]}
        grain = rollup.grain or ""
        assert grain in grains  # a rollup with a time field has a day or month grain
        group.insert(
            rng.randrange(len(group) + 1),
            {"field": time_field, "grain": rng.choice(grains[grain])},
        )
    filters: list[dict[str, Any]] = []
    for field in rng.sample(dims, rng.randrange(min(2, len(dims)) + 1)):
        values = FILTER_VALUES[field]
        op = rng.choice(["eq", "ne", "in", "not_in", "is_null", "is_not_null"])
        if op in ("is_null", "is_not_null"):
            filters.append({"field": field, "op": op})
        elif op in ("in", "not_in"):
            filters.append({"field": field, "op": op, "value": rng.sample(values, 2)})
        else:
            filters.append({"field": field, "op": op, "value": rng.choice(values)})
    metrics: list[dict[str, Any]] = []
    for m_op, m_field in rollup.measures:
        if rng.random() < 0.6:
            metrics.append({"op": m_op} if m_field is None else {"op": m_op, "field": m_field})
    if ("sum", "amount_minor") in rollup.measures and ("count", "amount_minor") in rollup.measures:
        metrics.append({"op": "avg", "field": "amount_minor"})
    if ("sum", "nights") in rollup.measures and rng.random() < 0.5:
        metrics.append({"op": "avg", "field": "nights"})
    body: dict[str, Any] = {
        "dataset": "bookings",
        "group_by": group,
        "metrics": metrics or [{"op": "count"}],
        "filters": filters,
        "limit": rng.choice([1000, 1000, 7]),
    }
    if time_field is not None and rng.random() < 0.5:
        start = date(2016, 1, 1) + timedelta(days=rng.randrange(300))
        if rng.random() < 0.6:
            start = start.replace(day=1)
            end = date(start.year + (start.month + 2) // 12, (start.month + 2) % 12 + 1, 1)
            end -= timedelta(days=1)
        else:
            end = start + timedelta(days=rng.randrange(1, 200))
        body["time_range"] = {"field": time_field, "from": str(start), "to": str(end)}
    return body


async def test_random_requests_equal_the_base_query(rollup_db: asyncpg.Connection) -> None:
    stored = await list_rollups(rollup_db, ORG_A)
    assert len(stored) == len(DEFINITIONS)
    rng = random.Random(20261205)
    from_rollup = 0
    for _ in range(200):
        body = random_request(rng)
        req = request_from_dict(body)
        fast = await aggregate(rollup_db, ORG_A, req)
        base = await aggregate(rollup_db, ORG_A, req, use_rollups=False)
        assert base.rollup_id is None
        assert (fast.rows, fast.truncated) == (base.rows, base.truncated), body
        assert [c.name for c in fast.columns] == [c.name for c in base.columns]
        matching = [s.id for s in stored if mismatch(req, s.rollup) is None]
        assert fast.rollup_id == (matching[0] if matching else None), body
        if fast.rollup_id is not None:
            assert fast.to_json()["source"] == {"rollup": fast.rollup_id}
            from_rollup += 1
    assert from_rollup >= 120  # most random requests were answered from a rollup
    assert sum(len(s.rollup.measures) for s in stored) > 0


async def figures(conn: asyncpg.Connection, body: dict[str, Any]) -> tuple[Any, Any, int | None]:
    fast = await aggregate(conn, ORG_A, body)
    base = await aggregate(conn, ORG_A, body, use_rollups=False)
    return fast.rows, base.rows, fast.rollup_id


MONTHLY_VENUES: dict[str, Any] = {
    "dataset": "bookings",
    "group_by": ["venue_id", {"field": "service_date", "grain": "month"}],
    "metrics": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
    "filters": [{"field": "venue_id", "op": "eq", "value": "v1"}],
    "time_range": {"field": "service_date", "from": "2016-03-01", "to": "2016-03-31"},
}


async def test_a_direct_sql_insert_update_and_delete_change_the_answer(
    rollup_db: asyncpg.Connection,
) -> None:
    conn = rollup_db
    fast, base, rollup_id = await figures(conn, MONTHLY_VENUES)
    assert rollup_id is not None and fast == base
    eur = next(r for r in fast if r["currency"] == "EUR")
    count, total = eur["count"], eur["sum_amount_minor"]
    # insert (as the operator would, outside the application): 12.34 EUR more in March
    await conn.execute(
        "INSERT INTO bookings (organization_id, id, venue_id, service_date, booked_at,"
        " amount_minor, currency, status) VALUES ($1, 'direct-1', 'v1', '2016-03-15',"
        " '2016-01-01T00:00Z', 1234, 'EUR', 'booked')",
        ORG_A,
    )
    fast, base, rollup_id = await figures(conn, MONTHLY_VENUES)
    eur = next(r for r in fast if r["currency"] == "EUR")
    assert rollup_id is not None and fast == base
    assert (eur["count"], eur["sum_amount_minor"]) == (count + 1, total + 1234)
    # update: the amount, then move it out of March
    await conn.execute(
        "UPDATE bookings SET amount_minor = 1 WHERE organization_id = $1 AND id = 'direct-1'",
        ORG_A,
    )
    fast, base, _ = await figures(conn, MONTHLY_VENUES)
    eur = next(r for r in fast if r["currency"] == "EUR")
    assert fast == base and (eur["count"], eur["sum_amount_minor"]) == (count + 1, total + 1)
    await conn.execute(
        "UPDATE bookings SET service_date = '2016-04-02'"
        " WHERE organization_id = $1 AND id = 'direct-1'",
        ORG_A,
    )
    fast, base, _ = await figures(conn, MONTHLY_VENUES)
    eur = next(r for r in fast if r["currency"] == "EUR")
    assert fast == base and (eur["count"], eur["sum_amount_minor"]) == (count, total)
    # delete one March booking of v1 in EUR
    victim = await conn.fetchrow(
        "SELECT id, amount_minor FROM bookings WHERE organization_id = $1 AND venue_id = 'v1'"
        " AND currency = 'EUR' AND service_date BETWEEN '2016-03-01' AND '2016-03-31' LIMIT 1",
        ORG_A,
    )
    await conn.execute(
        "DELETE FROM bookings WHERE organization_id = $1 AND id = $2", ORG_A, victim["id"]
    )
    fast, base, rollup_id = await figures(conn, MONTHLY_VENUES)
    eur = next(r for r in fast if r["currency"] == "EUR")
    assert rollup_id is not None and fast == base
    assert (eur["count"], eur["sum_amount_minor"]) == (count - 1, total - victim["amount_minor"])
    # a write of the tenant itself (RLS role) marks its rollups too; ORG_B's write does not
    async with tenant_transaction(conn, ORG_B):
        await conn.execute(
            "UPDATE bookings SET amount_minor = amount_minor + 1 WHERE organization_id = $1"
            " AND service_date BETWEEN '2016-03-01' AND '2016-03-31'",
            ORG_B,
        )
    assert not await conn.fetchval(
        "SELECT count(*) FROM rollup_dirty WHERE organization_id = $1 AND rollup_id = $2",
        ORG_A,
        rollup_id,
    )
    target = await conn.fetchval(
        "SELECT id FROM bookings WHERE organization_id = $1 AND venue_id = 'v1'"
        " AND currency = 'EUR' AND service_date BETWEEN '2016-03-01' AND '2016-03-31'"
        " ORDER BY id LIMIT 1",
        ORG_A,
    )
    async with tenant_transaction(conn, ORG_A):
        changed = await conn.execute(
            "UPDATE bookings SET amount_minor = amount_minor + 100"
            " WHERE organization_id = $1 AND id = $2",
            ORG_A,
            target,
        )
    assert changed == "UPDATE 1"
    fast, base, rollup_id = await figures(conn, MONTHLY_VENUES)
    eur = next(r for r in fast if r["currency"] == "EUR")
    assert rollup_id is not None and fast == base
    assert eur["sum_amount_minor"] == total - victim["amount_minor"] + 100
    # the rollup that answered was refreshed: none of its buckets is dirty now
    assert not await conn.fetchval(
        "SELECT count(*) FROM rollup_dirty WHERE organization_id = $1 AND rollup_id = $2",
        ORG_A,
        rollup_id,
    )


async def test_a_zone_change_rebuilds_timestamp_buckets(rollup_db: asyncpg.Connection) -> None:
    conn = rollup_db
    body = {
        "dataset": "bookings",
        "group_by": [{"field": "booked_at", "grain": "day"}],
        "metrics": [{"op": "count"}],
        "time_range": {"field": "booked_at", "from": "2016-02-01", "to": "2016-02-29"},
    }
    before, base, rollup_id = await figures(conn, body)
    assert rollup_id is not None and before == base
    await conn.execute("UPDATE organizations SET time_zone = 'Asia/Tokyo' WHERE id = $1", ORG_A)
    try:
        after, base, rollup_id = await figures(conn, body)
        assert rollup_id is not None and after == base
        assert after != before  # days of Tokyo are not days of São Paulo
    finally:
        await conn.execute(
            "UPDATE organizations SET time_zone = 'America/Sao_Paulo' WHERE id = $1", ORG_A
        )


async def test_rollups_are_the_organisations_own(rollup_db: asyncpg.Connection) -> None:
    conn = rollup_db
    a_ids = [r.id for r in await list_rollups(conn, ORG_A)]
    assert await list_rollups(conn, ORG_B) == []
    with pytest.raises(RollupNotFoundError):
        await delete_rollup(conn, ORG_B, a_ids[0])
    assert [r.id for r in await list_rollups(conn, ORG_A)] == a_ids
    # ORG_B's aggregation reads its own table, never ORG_A's rollup
    body = {"dataset": "bookings", "group_by": ["status"], "metrics": [{"op": "count"}]}
    result = await aggregate(conn, ORG_B, body)
    assert result.rollup_id is None
    assert sum(int(str(r["count"])) for r in result.rows) == 3000
    # the tenant role cannot see ORG_A's rollup rows from ORG_B's transaction (RLS)
    async with tenant_transaction(conn, ORG_B):
        assert await conn.fetchval("SELECT count(*) FROM rollup_rows") == 0
        assert await conn.fetchval("SELECT count(*) FROM rollups") == 0


async def test_the_optimiser_measures_and_proposes(rollup_db: asyncpg.Connection) -> None:
    body = {
        "dataset": "bookings",
        "group_by": [{"field": "booked_at", "grain": "month"}],
        "metrics": [{"op": "count"}, {"op": "min", "field": "nights"}],
        "time_range": {"field": "booked_at", "from": "2016-01-01", "to": "2016-06-30"},
    }
    answer = await optimize(rollup_db, ORG_B, body, runs=3)
    baseline = answer["baseline"]
    assert baseline["runs"] == 3 and baseline["median_ms"] > 0
    assert baseline["min_ms"] <= baseline["median_ms"] <= baseline["p95_ms"] <= baseline["max_ms"]
    assert baseline["rows"] == 6  # six months
    rollup = answer["candidates"][0]
    assert rollup["kind"] == "rollup" and rollup["status"] == "measured"
    assert rollup["definition"] == {
        "dataset": "bookings",
        "dimensions": [],
        "measures": [{"op": "count"}, {"op": "min", "field": "nights"}],
        "time_dimension": {"field": "booked_at", "grain": "month"},
    }
    assert rollup["measured"]["checksum"] == baseline["checksum"] and rollup["same_result"]
    assert rollup["improvement"] == (rollup["measured"]["p95_ms"] < baseline["median_ms"])
    # the scratch rollup was rolled back
    assert await list_rollups(rollup_db, ORG_B) == []
    # the plan is ORG_B's, without counts of rows its filters removed
    assert "Rows Removed by Filter" not in str(answer["plan"])
    assert "Planning Time" in answer["plan"] and "checksum" in answer["rule"]
    # a non-additive request gets no rollup candidate
    distinct = {**body, "metrics": [{"op": "distinct_count", "field": "client_id"}]}
    answer = await optimize(rollup_db, ORG_B, distinct, runs=1)
    assert answer["candidates"][0]["status"] == "not_applicable"
    assert answer["verdict"] == "no improvement" and answer["best"] is None


ESTIMATE_KEYS = {"Plan Rows", "Total Cost", "Startup Cost", "Plan Width", "planner_cost"}


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


BLANKED = ("improvement", "best", "verdict", "planner_would_use")
"""Timing-dependent keys, and the planner's yes/no on a hypothetical index (a choice, like the
plan's node types, that still follows statistics of every organisation: see README)."""


def _skeleton(node: Any) -> Any:
    """The answer with every measured number, and the timing-dependent verdict, blanked."""
    if isinstance(node, dict):
        return {k: "blank" if k in BLANKED else _skeleton(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_skeleton(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int | float):
        return "number"
    return node


async def test_the_optimiser_answers_no_planner_estimates(
    rollup_db: asyncpg.Connection,
) -> None:
    """Estimates come from statistics over every organisation's rows: a filter on another
    organisation's venue id must answer exactly as one on a venue id nobody has."""
    third = "rollup-c"
    await upsert_organization(rollup_db, Organization(third, third, "UTC", "EUR"))
    await rollup_db.execute("DELETE FROM bookings WHERE organization_id = $1", third)
    theirs = [dataclasses.replace(r, venue_id="c-secret-venue") for r in rows(third, 400, 5)]
    await copy_bookings(rollup_db, theirs)
    await rollup_db.execute("ANALYZE bookings")
    body: dict[str, Any] = {
        "dataset": "bookings",
        "group_by": ["status"],
        "metrics": [{"op": "count"}],
        "filters": [{"field": "venue_id", "op": "eq", "value": "c-secret-venue"}],
    }
    made_up = {**body, "filters": [{**body["filters"][0], "value": "no-such-venue-anywhere"}]}
    try:
        existing = await optimize(rollup_db, ORG_B, body, runs=1)
        unknown = await optimize(rollup_db, ORG_B, made_up, runs=1)
    finally:
        await rollup_db.execute("DELETE FROM bookings WHERE organization_id = $1", third)
    for answer in (existing, unknown):
        assert not _keys(answer) & ESTIMATE_KEYS, _keys(answer) & ESTIMATE_KEYS
        assert answer["baseline"]["rows"] == 0  # ORG_B has no row at either venue
        # what was measured under RLS stays: actual rows (ORG_B's own) and loops
        assert answer["plan"]["Plan"]["Actual Rows"] == 0
        assert "Actual Loops" in answer["plan"]["Plan"]
    # everything but the plan tree and the planner's yes/no is identical once measured numbers
    # are blanked; those may differ in the planner's CHOICE (a residual channel, see README)
    assert _skeleton({**existing, "plan": None}) == _skeleton({**unknown, "plan": None})


async def test_a_load_looks_only_at_its_own_organisations_rollups(
    rollup_db: asyncpg.Connection,
) -> None:
    """ORG_A has 4 bookings rollups; an insert of ORG_B's rows must mark ORG_B's one rollup
    only: the dirty-marking trigger runs one INSERT INTO rollup_dirty per rollup it looks at,
    counted here by a statement trigger on rollup_dirty (ON CONFLICT DO NOTHING still fires)."""
    conn = rollup_db
    assert len(await list_rollups(conn, ORG_A)) == len(DEFINITIONS) == 4
    own = await create_rollup(conn, ORG_B, definition_from_dict(DEFINITIONS[3]))
    await conn.execute(
        "CREATE SEQUENCE test_dirty_statements;"
        " CREATE FUNCTION test_count_dirty() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM nextval('test_dirty_statements'); RETURN NULL; END $$;"
        " CREATE TRIGGER test_count_dirty AFTER INSERT ON rollup_dirty"
        " FOR EACH STATEMENT EXECUTE FUNCTION test_count_dirty()"
    )
    try:
        await conn.execute(
            "INSERT INTO bookings (organization_id, id, venue_id, service_date, booked_at,"
            " amount_minor, currency, status) SELECT $1, 'load-' || g, 'v1', '2016-03-15',"
            " '2016-01-01T00:00Z', g, 'EUR', 'booked' FROM generate_series(1, 50) AS g",
            ORG_B,
        )
        calls = await conn.fetchval(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_dirty_statements"
        )
        assert calls == 1  # ORG_B's one rollup, not ORG_A's four as well
        dirty = await conn.fetch("SELECT DISTINCT organization_id, rollup_id FROM rollup_dirty")
        assert (ORG_B, own) in {(r[0], r[1]) for r in dirty}
    finally:
        await conn.execute(
            "DROP TRIGGER test_count_dirty ON rollup_dirty; DROP FUNCTION test_count_dirty();"
            " DROP SEQUENCE test_dirty_statements"
        )
        await conn.execute(
            "DELETE FROM bookings WHERE organization_id = $1 AND id LIKE 'load-%'", ORG_B
        )
        await delete_rollup(conn, ORG_B, own)


async def test_every_datasets_table_keeps_its_rollups_fresh(
    rollup_db: asyncpg.Connection,
) -> None:
    """Rollups were marked dirty on five tables only: a rollup over ``suppliers`` kept its
    first count after a supplier was added. Every dataset's table has the four triggers, and a
    rollup over suppliers and one over catering events (grouped by month) follow an insert."""
    conn = rollup_db
    triggers = await conn.fetch(
        "SELECT c.relname AS table_name, t.tgname FROM pg_trigger t"
        " JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname LIKE 'wedding_rollup_dirty_%'"
    )
    by_table: dict[str, set[str]] = {}
    for r in triggers:
        by_table.setdefault(r["table_name"], set()).add(r["tgname"])
    kinds = {f"wedding_rollup_dirty_{k}" for k in ("ins", "upd", "del", "trunc")}
    for ds in DATASETS.values():
        assert by_table.get(ds.table) == kinds, ds.table

    await conn.execute("DELETE FROM suppliers WHERE organization_id = $1", ORG_A)
    await conn.execute("DELETE FROM catering_menus WHERE organization_id = $1", ORG_A)
    await conn.execute(
        "INSERT INTO suppliers (organization_id, id, name, kind) VALUES ($1, 's-1', 'A', 'dj')",
        ORG_A,
    )
    await conn.execute(
        "INSERT INTO catering_menus (organization_id, id, name, price_per_cover_minor, currency)"
        " VALUES ($1, 'm-1', 'Garden', 9500, 'EUR')",
        ORG_A,
    )
    await conn.execute(
        "INSERT INTO catering_events (organization_id, id, booking_id, menu_id, event_date,"
        " covers) VALUES ($1, 'ev-1', 'b-1', 'm-1', '2016-05-07', 100)",
        ORG_A,
    )
    suppliers_rollup = await create_rollup(
        conn,
        ORG_A,
        definition_from_dict(
            {"dataset": "suppliers", "dimensions": ["kind"], "measures": [{"op": "count"}]}
        ),
    )
    events_rollup = await create_rollup(
        conn,
        ORG_A,
        definition_from_dict(
            {
                "dataset": "catering_events",
                "dimensions": ["menu_id"],
                "time_dimension": {"field": "event_date", "grain": "month"},
                "measures": [{"op": "count"}, {"op": "sum", "field": "covers"}],
            }
        ),
    )
    kinds_body = {"dataset": "suppliers", "group_by": ["kind"], "metrics": [{"op": "count"}]}
    covers_body = {
        "dataset": "catering_events",
        "group_by": ["menu_id", {"field": "event_date", "grain": "month"}],
        "metrics": [{"op": "count"}, {"op": "sum", "field": "covers"}],
    }
    try:
        fast, base, used = await figures(conn, kinds_body)
        assert used == suppliers_rollup and fast == base == [{"kind": "dj", "count": 1}]
        fast, base, used = await figures(conn, covers_body)
        assert used == events_rollup and fast == base
        assert fast == [
            {"menu_id": "m-1", "event_date_month": "2016-05", "count": 1, "sum_covers": 100}
        ]
        await conn.execute(
            "INSERT INTO suppliers (organization_id, id, name, kind) VALUES ($1, 's-2', 'B', 'dj')",
            ORG_A,
        )
        await conn.execute(
            "INSERT INTO catering_events (organization_id, id, booking_id, menu_id, event_date,"
            " covers) VALUES ($1, 'ev-2', 'b-2', 'm-1', '2016-05-21', 40)",
            ORG_A,
        )
        fast, base, used = await figures(conn, kinds_body)
        assert used == suppliers_rollup and fast == base == [{"kind": "dj", "count": 2}]
        fast, base, used = await figures(conn, covers_body)
        assert used == events_rollup and fast == base
        assert fast == [
            {"menu_id": "m-1", "event_date_month": "2016-05", "count": 2, "sum_covers": 140}
        ]
    finally:
        for rollup in (suppliers_rollup, events_rollup):
            await delete_rollup(conn, ORG_A, rollup)
        await conn.execute("DELETE FROM suppliers WHERE organization_id = $1", ORG_A)
        await conn.execute("DELETE FROM catering_menus WHERE organization_id = $1", ORG_A)


async def test_rollup_ids_say_nothing_of_other_tenants(rollup_db: asyncpg.Connection) -> None:
    """Rollup ids came from one sequence of every organisation: a tenant read from two of its
    own ids how many the others created in between (an attacker round). Ids are random in
    1..2**53-1: three created one after the other, in two organisations, are no run of
    consecutive numbers (each pair a chance of 2**-41 of being within 1,000)."""
    conn = rollup_db
    definition = definition_from_dict(
        {"dataset": "bookings", "dimensions": ["status"], "measures": [{"op": "count"}]}
    )
    ids = [await create_rollup(conn, org, definition) for org in (ORG_B, ORG_A, ORG_B)]
    try:
        assert all(1 <= i <= 2**53 - 1 for i in ids)
        assert all(abs(a - b) > 1000 for a, b in itertools.pairwise(ids))
        assert {r.id for r in await list_rollups(conn, ORG_B)} >= {ids[0], ids[2]}
    finally:
        for org, rollup_id in zip((ORG_B, ORG_A, ORG_B), ids, strict=True):
            await delete_rollup(conn, org, rollup_id)
