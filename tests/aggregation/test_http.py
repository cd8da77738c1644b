"""``POST /orgs/{org}/aggregations`` through a real worker: figures, tokens, bad input."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

import aiohttp
import asyncpg

from stream_app.devservices.workers import WorkerProcess
from tests.aggregation.cases import BAD, GOOD
from tests.aggregation.conftest import HOTEL_ORG, OTHER_ORG, AggData
from tests.aggregation.expected import percentile_cont
from tests.e2e.helpers import auth


async def post(
    worker: WorkerProcess, org: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.post(f"/orgs/{org}/aggregations", json=body, headers=headers or {}) as r,
    ):
        return r.status, await r.json()


async def test_the_issue_example_over_http_matches_the_csv(
    agg_data: AggData, main_worker: WorkerProcess
) -> None:
    status, result = await post(main_worker, HOTEL_ORG, GOOD, auth(agg_data.settings, HOTEL_ORG))
    assert status == 200, result
    amounts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in agg_data.csv:
        if not r.cancelled and date(2016, 1, 1) <= r.arrival <= date(2016, 12, 31):
            amounts[(r.venue, r.arrival.isoformat()[:7])].append(r.amount)
    got = {(r["venue_id"], r["service_date_month"]): r for r in result["rows"]}
    assert set(got) == set(amounts)
    for key, values in amounts.items():
        row = got[key]
        assert row["currency"] == "EUR"
        assert row["count"] == len(values)
        assert row["sum_amount_minor"] == sum(values)
        assert float(row["p90_amount_minor"]) == percentile_cont(values, 0.9)
        assert row["distinct_count_client_id"] == 0
    assert result["organization_id"] == HOTEL_ORG and result["time_zone"] == "Europe/Lisbon"


async def test_tokens_and_tenants(agg_data: AggData, main_worker: WorkerProcess) -> None:
    s = agg_data.settings
    status, body = await post(main_worker, HOTEL_ORG, GOOD)
    assert (status, body["error"]["field"]) == (401, "Authorization")
    # a token of another organisation cannot read this one
    status, body = await post(main_worker, HOTEL_ORG, GOOD, auth(s, OTHER_ORG))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = await post(main_worker, "agg-nobody", GOOD, auth(s, "agg-nobody"))
    assert (status, body["error"]["field"]) == (404, "organization_id")
    # agg-other's own figures: its 5 crafted rows, nothing of agg-hotel's 119,389
    body_in = {"dataset": "bookings", "metrics": [{"op": "count"}]}
    status, body = await post(main_worker, OTHER_ORG, body_in, auth(s, OTHER_ORG))
    assert (status, body["rows"]) == (200, [{"count": 5}])


async def test_every_bad_input_is_a_400_naming_the_field(
    agg_data: AggData, main_worker: WorkerProcess
) -> None:
    h = auth(agg_data.settings, HOTEL_ORG)
    for body_in, field in BAD:
        status, body = await post(main_worker, HOTEL_ORG, body_in, h)
        assert status == 400, (body_in, body)
        assert body["error"]["field"] == field, (body_in, body)
    async with (
        aiohttp.ClientSession(main_worker.url) as session,
        session.post(f"/orgs/{HOTEL_ORG}/aggregations", data=b"{oops", headers=h) as r,
    ):
        assert r.status == 400
        assert (await r.json())["error"]["code"] == "invalid_json"


async def test_injection_in_values_is_inert(agg_data: AggData, main_worker: WorkerProcess) -> None:
    h = auth(agg_data.settings, HOTEL_ORG)
    for value in ("x' OR '1'='1", "'); DROP TABLE bookings; --", "city-hotel' --"):
        body_in = {
            "dataset": "bookings",
            "metrics": [{"op": "count"}],
            "filters": [{"field": "venue_id", "op": "in", "value": [value]}],
        }
        status, body = await post(main_worker, HOTEL_ORG, body_in, h)
        assert (status, body["rows"]) == (200, [{"count": 0}]), value
    # the table is still there and whole
    status, body = await post(
        main_worker, HOTEL_ORG, {"dataset": "bookings", "metrics": [{"op": "count"}]}, h
    )
    assert (status, body["rows"]) == (200, [{"count": len(agg_data.csv)}])


async def test_the_allow_list_names_real_columns_and_no_personal_data(
    agg_data: AggData, main_worker: WorkerProcess
) -> None:
    h = auth(agg_data.settings, HOTEL_ORG)
    async with (
        aiohttp.ClientSession(main_worker.url) as s,
        s.get(f"/orgs/{HOTEL_ORG}/aggregations/datasets", headers=h) as r,
    ):
        assert r.status == 200
        listed = (await r.json())["datasets"]
    conn = await asyncpg.connect(agg_data.settings.postgres_dsn)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    actual = {(c["table_name"], c["column_name"]): c["data_type"] for c in columns}
    sql_types = {
        "text": {"text", "character"},
        "int": {"integer", "smallint", "bigint"},
        "money": {"bigint"},
        "date": {"date"},
        "timestamp": {"timestamp with time zone"},
    }
    assert {d["name"] for d in listed} == {
        "bookings", "payments", "feedback", "weddings", "clients", "suppliers", "venues",
        "offices", "catering_events", "catering_menus", "catering_ingredients",
    }  # fmt: skip
    for ds in listed:
        for f in ds["fields"]:
            assert actual[(ds["name"], f["name"])] in sql_types[f["type"]], (ds["name"], f)
        names = {f["name"] for f in ds["fields"]}
        assert "organization_id" not in names
        assert not names & {"email", "display_name", "name"}
