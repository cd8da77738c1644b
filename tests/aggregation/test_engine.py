"""The aggregation API through Python against the real PostgreSQL, checked against the CSV."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import date
from typing import Any

import asyncpg
import pytest

from stream_app.aggregation import (
    AggregationError,
    aggregate,
    compile_request,
    request_from_dict,
)
from stream_app.aggregation import engine as engine_module
from stream_app.aggregation.datasets import DATASETS, GRAINS
from stream_app.aggregation.engine import AggregationTimeoutError
from stream_app.db.tenancy import Organization, tenant_transaction, upsert_organization
from tests.aggregation.cases import BAD, GOOD
from tests.aggregation.conftest import EMPTY_ORG, HOTEL_ORG, OTHER_ORG, AggData
from tests.aggregation.expected import (
    avg_text,
    iso_week,
    percentile_cont,
    percentile_disc,
)
from tests.hotel_csv import CsvBooking

Groups = dict[tuple[Any, ...], list[CsvBooking]]


def group(rows: list[CsvBooking], key: Any) -> Groups:
    out: Groups = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return out


async def run(data: AggData, body: dict[str, Any], org: str = HOTEL_ORG) -> dict[str, Any]:
    pool = await asyncpg.create_pool(data.settings.postgres_dsn, min_size=1, max_size=2)
    try:
        return (await aggregate(pool, org, body)).to_json()
    finally:
        await pool.close()


async def test_the_issue_example_matches_the_csv(agg_data: AggData) -> None:
    body = {
        **GOOD,
        "metrics": [
            *GOOD["metrics"],
            {"op": "avg", "field": "amount_minor"},
            {"op": "min", "field": "amount_minor"},
            {"op": "max", "field": "amount_minor"},
            {"op": "percentile_disc", "field": "amount_minor", "p": 0.5},
            {"op": "percentile_cont", "field": "nights", "p": 0.25},
            {"op": "distinct_count", "field": "nights"},
            {"op": "sum", "field": "nights"},
            {"op": "min", "field": "service_date"},
            {"op": "max", "field": "booked_at"},
        ],
    }
    result = await run(agg_data, body)
    assert not result["truncated"] and not result["estimate"]
    names = [c["name"] for c in result["columns"]]
    assert names[:3] == ["venue_id", "service_date_month", "currency"]  # currency added
    booked_2016 = [
        r
        for r in agg_data.csv
        if not r.cancelled and date(2016, 1, 1) <= r.arrival <= date(2016, 12, 31)
    ]
    expected = group(booked_2016, lambda r: (r.venue, r.arrival.isoformat()[:7], "EUR"))
    got = {(r["venue_id"], r["service_date_month"], r["currency"]): r for r in result["rows"]}
    assert set(got) == set(expected) and len(got) == 24
    for key, rows in expected.items():
        row = got[key]
        amounts = [r.amount for r in rows]
        nights = [r.nights for r in rows]
        assert row["count"] == len(rows), key
        assert row["sum_amount_minor"] == sum(amounts), key
        assert row["avg_amount_minor"] == avg_text(amounts), key
        assert row["min_amount_minor"] == min(amounts) and row["max_amount_minor"] == max(amounts)
        assert float(row["p90_amount_minor"]) == percentile_cont(amounts, 0.9), key
        assert row["p50_disc_amount_minor"] == percentile_disc(amounts, 0.5), key
        assert float(row["p25_nights"]) == percentile_cont(nights, 0.25), key
        assert row["distinct_count_nights"] == len(set(nights)), key
        assert row["sum_nights"] == sum(nights), key
        assert row["distinct_count_client_id"] == 0  # the data set has no client ids
        assert row["min_service_date"] == min(r.arrival for r in rows).isoformat()
        # booked at 12:00 Lisbon on the booking date: 11:00 or 12:00 UTC
        latest = max(r.booked_on for r in rows)
        assert row["max_booked_at"][:10] == latest.isoformat()
        assert row["max_booked_at"][11:] in ("11:00:00+00:00", "12:00:00+00:00")
    # rows come ordered by the groups
    assert list(got) == sorted(got)


async def test_timestamp_grains_are_local_weeks_of_the_organisation(agg_data: AggData) -> None:
    body = {
        "dataset": "bookings",
        "group_by": [{"field": "booked_at", "grain": "week", "as": "week"}, "status"],
        "metrics": [{"op": "count"}],
        "time_range": {"field": "booked_at", "from": "2015-06-01", "to": "2015-12-31"},
        "limit": 10_000,
    }
    result = await run(agg_data, body)
    in_range = [r for r in agg_data.csv if date(2015, 6, 1) <= r.booked_on <= date(2015, 12, 31)]
    expected = {
        (k[0], k[1]): len(v)
        for k, v in group(
            in_range, lambda r: (iso_week(r.booked_on), "cancelled" if r.cancelled else "booked")
        ).items()
    }
    got = {(r["week"], r["status"]): r["count"] for r in result["rows"]}
    assert got == expected
    assert result["columns"][0]["type"] == "week"

    # Auckland (UTC+13 in summer): 2016-01-31 12:00 UTC is already February there
    monthly = await run(
        agg_data,
        {
            "dataset": "bookings",
            "group_by": [{"field": "booked_at", "grain": "month"}],
            "metrics": [{"op": "count"}],
        },
        OTHER_ORG,
    )
    assert [(r["booked_at_month"], r["count"]) for r in monthly["rows"]] == [
        ("2016-01", 1),
        ("2016-02", 4),
    ]
    # a local-date range: 2016-02-01 in Auckland starts at 2016-01-31 11:00 UTC
    ranged = await run(
        agg_data,
        {
            "dataset": "bookings",
            "metrics": [{"op": "count"}],
            "time_range": {"field": "booked_at", "from": "2016-02-01", "to": "2016-02-01"},
        },
        OTHER_ORG,
    )
    assert ranged["rows"] == [{"count": 1}]


async def test_money_is_never_summed_across_currencies(agg_data: AggData) -> None:
    body = {
        "dataset": "bookings",
        "group_by": ["venue_id"],
        "metrics": [
            {"op": "count"},
            {"op": "sum", "field": "amount_minor"},
            {"op": "avg", "field": "amount_minor"},
        ],
    }
    result = await run(agg_data, body, OTHER_ORG)
    assert result["notes"] and any("currency" in n for n in result["notes"])
    assert result["rows"] == [
        {
            "venue_id": "city-hotel",
            "currency": "EUR",
            "count": 2,
            "sum_amount_minor": 3001,
            "avg_amount_minor": "1500.500000",
        },
        {
            "venue_id": "city-hotel",
            "currency": "USD",
            "count": 1,
            "sum_amount_minor": 5000,
            "avg_amount_minor": "5000.000000",
        },
        {
            "venue_id": "resort-hotel",
            "currency": "EUR",
            "count": 1,
            "sum_amount_minor": 10**12,
            "avg_amount_minor": "1000000000000.000000",
        },
        {
            "venue_id": "resort-hotel",
            "currency": "USD",
            "count": 1,
            "sum_amount_minor": 7000,
            "avg_amount_minor": "7000.000000",
        },
    ]
    # grouping by currency explicitly gives the same split without a second currency column
    by_currency = await run(
        agg_data,
        {
            "dataset": "bookings",
            "group_by": ["currency"],
            "metrics": [{"op": "sum", "field": "amount_minor"}],
        },
        OTHER_ORG,
    )
    assert by_currency["rows"] == [
        {"currency": "EUR", "sum_amount_minor": 10**12 + 3001},
        {"currency": "USD", "sum_amount_minor": 12000},
    ]


async def test_filters_of_every_kind_match_the_csv(agg_data: AggData) -> None:
    rows = agg_data.csv
    cases: list[tuple[list[dict[str, Any]], Any]] = [
        (
            [{"field": "venue_id", "op": "eq", "value": "city-hotel"}],
            lambda r: r.venue == "city-hotel",
        ),
        (
            [{"field": "venue_id", "op": "ne", "value": "city-hotel"}],
            lambda r: r.venue != "city-hotel",
        ),
        ([{"field": "status", "op": "not_in", "value": ["booked"]}], lambda r: r.cancelled),
        ([{"field": "nights", "op": "gte", "value": 7}], lambda r: r.nights >= 7),
        ([{"field": "nights", "op": "lt", "value": 1}], lambda r: r.nights < 1),
        ([{"field": "nights", "op": "in", "value": [2, 3]}], lambda r: r.nights in (2, 3)),
        (
            [{"field": "amount_minor", "op": "between", "value": [10_000, 20_000]}],
            lambda r: 10_000 <= r.amount <= 20_000,
        ),
        (
            [{"field": "service_date", "op": "lte", "value": "2015-12-31"}],
            lambda r: r.arrival <= date(2015, 12, 31),
        ),
        ([{"field": "cancelled_at", "op": "is_null"}], lambda r: not r.cancelled),
        (
            [
                {"field": "cancelled_at", "op": "is_not_null"},
                {"field": "venue_id", "op": "eq", "value": "resort-hotel"},
            ],
            lambda r: r.cancelled and r.venue == "resort-hotel",
        ),
        (
            [{"field": "booked_at", "op": "lt", "value": "2015-01-01T00:00:00+00:00"}],
            lambda r: r.booked_on < date(2015, 1, 1),
        ),
        ([{"field": "client_id", "op": "is_null"}], lambda r: True),
    ]
    for filters, predicate in cases:
        result = await run(
            agg_data, {"dataset": "bookings", "metrics": [{"op": "count"}], "filters": filters}
        )
        assert result["rows"] == [{"count": sum(1 for r in rows if predicate(r))}], filters


async def test_another_tenant_is_never_counted(agg_data: AggData) -> None:
    total = await run(
        agg_data, {"dataset": "bookings", "group_by": ["venue_id"], "metrics": [{"op": "count"}]}
    )
    expected = group(agg_data.csv, lambda r: (r.venue,))
    assert {r["venue_id"]: r["count"] for r in total["rows"]} == {
        k[0]: len(v) for k, v in expected.items()
    }
    # values crafted to escape the predicate are plain values: they match nothing
    for value in (
        "x' OR '1'='1",
        "agg-other",
        "city-hotel' OR organization_id <> '",
        "'; DELETE FROM bookings; --",
        "\\' OR 1=1 --",
    ):
        for org in (HOTEL_ORG, OTHER_ORG):
            crafted = await run(
                agg_data,
                {
                    "dataset": "bookings",
                    "metrics": [{"op": "count"}],
                    "filters": [{"field": "venue_id", "op": "eq", "value": value}],
                },
                org,
            )
            assert crafted["rows"] == [{"count": 0}], (org, value)
    empty = await run(
        agg_data,
        {
            "dataset": "bookings",
            "metrics": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
        },
        EMPTY_ORG,
    )
    assert empty["rows"] == []  # money metrics group by currency: no currency, no row
    # the second wall: the compiled statement of one tenant, run as another, sees nothing
    query = compile_request(
        request_from_dict({"dataset": "bookings", "metrics": [{"op": "count"}]}), HOTEL_ORG, "UTC"
    )
    conn = await asyncpg.connect(agg_data.settings.postgres_dsn)
    try:
        async with tenant_transaction(conn, OTHER_ORG):
            assert await conn.fetchval(query.sql, *query.params) == 0
        async with tenant_transaction(conn, OTHER_ORG):
            assert await conn.fetchval("SELECT count(*) FROM bookings") == 5
    finally:
        await conn.close()
    assert await conn.is_closed() if False else True


async def test_sampling_is_repeatable_and_marked_as_an_estimate(agg_data: AggData) -> None:
    body = {
        "dataset": "bookings",
        "metrics": [{"op": "count"}],
        "sample": {"percent": 10, "seed": 7},
    }
    first = await run(agg_data, body)
    again = await run(agg_data, body)
    assert first["estimate"] is True and first["sample"] == {
        "percent": 10.0,
        "seed": 7,
        "method": "bernoulli",
    }
    assert any("estimate" in n for n in first["notes"])
    n = len(agg_data.csv)
    sampled = first["rows"][0]["count"]
    # Bernoulli(0.1) over n rows: standard deviation sqrt(n·0.1·0.9) ≈ 104; allow 6 of them
    assert abs(sampled - n / 10) < 6 * math.sqrt(n * 0.09)
    assert again["rows"] == first["rows"]


async def test_limit_marks_truncation(agg_data: AggData) -> None:
    body = {
        "dataset": "bookings",
        "group_by": ["service_date"],
        "metrics": [{"op": "count"}],
        "limit": 10,
    }
    result = await run(agg_data, body)
    days = sorted({r.arrival for r in agg_data.csv})
    assert result["truncated"] is True
    assert [r["service_date"] for r in result["rows"]] == [d.isoformat() for d in days[:10]]


@pytest.mark.parametrize(("body", "field"), BAD, ids=[f for _, f in BAD])
async def test_bad_requests_name_the_field(agg_data: AggData, body: Any, field: str) -> None:
    with pytest.raises(AggregationError) as err:
        if isinstance(body, dict):
            await run(agg_data, body)
        else:
            import orjson

            from stream_app.aggregation import decode_request

            decode_request(orjson.dumps(body))
    assert err.value.field == field, err.value.reason


async def test_statement_timeout_cancels_a_long_query(
    agg_data: AggData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "STATEMENT_TIMEOUT_MS", 1)
    body = {
        "dataset": "bookings",
        "group_by": ["service_date"],
        "metrics": [
            {"op": "percentile", "field": "amount_minor", "p": 0.5},
            {"op": "distinct_count", "field": "nights"},
        ],
    }
    with pytest.raises(AggregationTimeoutError):
        await run(agg_data, body)


# rows of agg-other per dataset (venues: city-hotel and resort-hotel)
OTHER_COUNTS = {
    "bookings": 5,
    "payments": 4,
    "feedback": 3,
    "weddings": 2,
    "clients": 2,
    "suppliers": 2,
    "venues": 2,
    "offices": 3,
    "catering_events": 3,
    "catering_menus": 3,
    "catering_ingredients": 2,
}


async def test_every_field_metric_and_grain_of_the_allow_list_runs(agg_data: AggData) -> None:
    """Each allow-listed column exists and each allowed metric/grain runs on the real schema;
    grouped counts always add up to the rows loaded (hand-counted above)."""
    for name, ds in DATASETS.items():
        for fname, spec in ds.fields.items():
            if spec.groupable:
                by_type: dict[str, list[str | None]] = {
                    "date": [None, *GRAINS],  # a date groups as it is, or by a grain
                    "timestamp": list(GRAINS),  # a timestamp needs a grain
                }
                grains = by_type.get(spec.type, [None])
                for grain in grains:
                    key: Any = fname if grain is None else {"field": fname, "grain": grain}
                    result = await run(
                        agg_data,
                        {"dataset": name, "group_by": [key], "metrics": [{"op": "count"}]},
                        OTHER_ORG,
                    )
                    assert sum(r["count"] for r in result["rows"]) == OTHER_COUNTS[name], (
                        name,
                        fname,
                        grain,
                    )
            for op in sorted(spec.allowed_metrics):
                metric: dict[str, Any] = {"op": op, "field": fname}
                if op.startswith("percentile"):
                    metric["p"] = 0.5
                result = await run(
                    agg_data,
                    {"dataset": name, "metrics": [{"op": "count"}, metric]},
                    OTHER_ORG,
                )
                assert sum(r["count"] for r in result["rows"]) == OTHER_COUNTS[name], (name, op)


async def test_payments_and_feedback_figures(agg_data: AggData) -> None:
    payments = await run(
        agg_data,
        {
            "dataset": "payments",
            "group_by": ["kind", {"field": "occurred_at", "grain": "month"}],
            "metrics": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
        },
        OTHER_ORG,
    )
    # pay-1..4 by hand (Auckland: 2016-02-01 09:00 UTC is 22:00 the same day there)
    assert payments["rows"] == [
        {"kind": "payment", "occurred_at_month": "2016-02", "currency": "EUR", "count": 2,
         "sum_amount_minor": 1000},
        {"kind": "payment", "occurred_at_month": "2016-02", "currency": "USD", "count": 1,
         "sum_amount_minor": 5000},
        {"kind": "refund", "occurred_at_month": "2016-03", "currency": "EUR", "count": 1,
         "sum_amount_minor": 150},
    ]  # fmt: skip
    feedback = await run(
        agg_data,
        {
            "dataset": "feedback",
            "metrics": [
                {"op": "avg", "field": "rating"},
                {"op": "avg", "field": "nps"},
                {"op": "count", "field": "nps"},
                {"op": "distinct_count", "field": "client_id"},
                {"op": "percentile_disc", "field": "rating", "p": 0.5},
            ],
        },
        OTHER_ORG,
    )
    # ratings 5, 4, 2: mean 11/3; NPS 10, 7 (one missing): mean 8.5; clients cl-1, cl-2
    assert feedback["rows"] == [
        {"avg_rating": "3.666667", "avg_nps": "8.500000", "count_nps": 2,
         "distinct_count_client_id": 2, "p50_disc_rating": 4},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (  # a trial user's `fn` for `op`: nothing close, so the known keys
            {"dataset": "bookings", "metrics": [{"fn": "count"}]},
            "$.metrics[0].fn",
            "unknown field (known: op, field, p, as)",
        ),
        (
            {"dataset": "bookings", "metrics": [{"op": "count"}], "group_by": [{"feild": "x"}]},
            "$.group_by[0].feild",
            "unknown field (did you mean `field`?)",
        ),
        (
            {"dataset": "bookings", "metric": [{"op": "count"}]},
            "$.metric",
            "unknown field (did you mean `metrics`?)",
        ),
        (
            {"dataset": "bookings", "metrics": [{"op": "count"}], "zzz": 1},
            "$.zzz",
            "unknown field (known: dataset, metrics, group_by, filters, time_range, sample, limit)",
        ),
    ],
)
def test_an_unknown_key_is_named_with_a_near_miss_or_the_known_keys(
    body: dict[str, object], field: str, reason: str
) -> None:
    import orjson

    from stream_app.aggregation import decode_request

    with pytest.raises(AggregationError) as err:
        decode_request(orjson.dumps(body))
    assert (err.value.field, err.value.reason) == (field, reason)


async def test_bookings_group_by_the_planner_office(agg_data: AggData) -> None:
    """A trial planner's first query, revenue per office, was a 400 (``office_id`` was not a
    field of the ``bookings`` dataset though the README lists it as a bookings column)."""
    org = f"agg-offices-{uuid.uuid4().hex[:8]}"
    rows = [("b1", "off-a", 1000), ("b2", "off-a", 250), ("b3", "off-b", 7), ("b4", None, 1)]
    pool = await asyncpg.create_pool(agg_data.settings.postgres_dsn, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await upsert_organization(conn, Organization(org, "Offices", "Europe/Madrid", "GBP"))
            await conn.executemany(
                "INSERT INTO bookings (organization_id, id, office_id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, $2, $3, '2025-03-10',"
                " '2025-01-02T10:00:00Z', $4, 'GBP', 'booked')",
                [(org, bid, office, amount) for bid, office, amount in rows],
            )
        body = {
            "dataset": "bookings",
            "group_by": ["office_id"],
            "metrics": [{"op": "count"}, {"op": "sum", "field": "amount_minor"}],
        }
        answer: dict[str, Any] = (await aggregate(pool, org, body)).to_json()
    finally:
        await pool.close()
    assert [c["name"] for c in answer["columns"]][:2] == ["office_id", "currency"]
    got = {
        (r["office_id"], r["currency"]): (r["count"], r["sum_amount_minor"]) for r in answer["rows"]
    }
    assert got == {("off-a", "GBP"): (2, 1250), ("off-b", "GBP"): (1, 7), (None, "GBP"): (1, 1)}


async def test_a_caterers_and_a_planners_datasets(agg_data: AggData) -> None:
    """A trial caterer found no catering data in the aggregations: covers per menu and month,
    menu prices per currency and offices per city, against the hand-written rows of
    ``OTHER_TABLES`` (agg-other)."""
    covers = await run(
        agg_data,
        {
            "dataset": "catering_events",
            "group_by": ["menu_id", {"field": "event_date", "grain": "month"}],
            "metrics": [{"op": "count"}, {"op": "sum", "field": "covers"}],
        },
        OTHER_ORG,
    )
    got = {
        (r["menu_id"], r["event_date_month"]): (r["count"], r["sum_covers"]) for r in covers["rows"]
    }
    assert got == {("m-1", "2016-03"): (2, 200), ("m-2", "2016-04"): (1, 45)}
    prices = await run(
        agg_data,
        {
            "dataset": "catering_menus",
            "metrics": [{"op": "count"}, {"op": "max", "field": "price_per_cover_minor"}],
        },
        OTHER_ORG,
    )
    assert prices["columns"][0]["name"] == "currency"  # money: per currency
    got_prices = {
        r["currency"]: (r["count"], r["max_price_per_cover_minor"]) for r in prices["rows"]
    }
    assert got_prices == {"EUR": (2, 12000), "USD": (1, 15000)}
    offices = await run(
        agg_data,
        {"dataset": "offices", "group_by": ["city"], "metrics": [{"op": "count"}]},
        OTHER_ORG,
    )
    assert {r["city"]: r["count"] for r in offices["rows"]} == {"Auckland": 2, "Queenstown": 1}
    none = await run(  # the hotel organisation has no catering rows: nothing of agg-other's
        agg_data, {"dataset": "catering_events", "metrics": [{"op": "count"}]}, HOTEL_ORG
    )
    assert [r["count"] for r in none["rows"]] in ([], [0])
