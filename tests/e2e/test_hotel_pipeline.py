"""The main job end to end on the real hotel booking data set.

Real Kafka, real PostgreSQL, a real worker process: replay 163,614 events, request the monthly
booking summary over HTTP, and compare every venue-month with figures computed straight from
the CSV. Then replay the same file again and check that nothing changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.replay.produce import replay_hotel_bookings
from stream_app.settings import Settings
from stream_app.topics import DEAD_LETTER, REALTIME_METRICS_UPDATES, WEDDING_BOOKINGS
from tests.e2e.helpers import (
    auth,
    download,
    expected_monthly_from_csv,
    read_topic,
    request_report_http,
)
from tests.hotel_csv import read_csv

ORG = "hotel-demand-pt"
GROUP = "wedding-tests"
pytestmark = pytest.mark.slow

FULL_RANGE = {
    "report_type": "monthly_booking_summary",
    "date_from": "2015-07-01",
    "date_to": "2017-08-31",
    "output_formats": ["csv", "json"],
}


@pytest.fixture(scope="module")
async def replayed(
    settings: Settings, main_worker: WorkerProcess, hotel_csv: Path
) -> AsyncIterator[dict[tuple[str, str], tuple[int, int, int]]]:
    await replay_hotel_bookings(settings, hotel_csv)
    await wait_for_lag_zero(settings.kafka_bootstrap, GROUP, WEDDING_BOOKINGS, timeout_s=900)
    yield expected_monthly_from_csv(hotel_csv)


def report_figures(csv_bytes: bytes) -> dict[tuple[str, str], tuple[int, int, int]]:
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8-sig"))))
    out = {}
    for r in rows:
        assert r["currency"] == "EUR"
        out[(r["venue_id"], r["month"])] = (
            int(r["bookings"]),
            int(r["cancellations"]),
            int(r["revenue_minor"]),
        )
    return out


async def full_report(settings: Settings, worker: WorkerProcess) -> tuple[dict[str, Any], bytes]:
    status = await request_report_http(worker.url, settings, ORG, FULL_RANGE)
    assert status["status"] == "completed", status
    by_format = {a["format"]: a for a in status["artifacts"]}
    body = await download(worker.url, settings, ORG, by_format["csv"]["download_url"])
    assert hashlib.sha256(body).hexdigest() == by_format["csv"]["sha256"]
    assert len(body) == by_format["csv"]["size_bytes"]
    return status, body


async def test_report_equals_csv_for_every_venue_month(
    settings: Settings, main_worker: WorkerProcess, replayed: dict[tuple[str, str], Any]
) -> None:
    status, body = await full_report(settings, main_worker)
    figures = report_figures(body)
    # 26 arrival months × 2 venues, every one equal to the independent computation
    assert len(replayed) == 52
    assert figures == replayed
    json_link = next(a for a in status["artifacts"] if a["format"] == "json")
    doc = orjson.loads(await download(main_worker.url, settings, ORG, json_link["download_url"]))
    from_json = {
        (r["venue_id"], r["month"]): (r["bookings"], r["cancellations"], r["revenue_minor"])
        for r in doc["rows"]
    }
    assert from_json == replayed
    # published headline figures of the data set (README of the data): City Hotel
    city = [v for (venue, _), v in replayed.items() if venue == "city-hotel"]
    assert sum(b for b, _, _ in city) == 79_330 and sum(c for _, c, _ in city) == 33_102
    assert sum(r for _, _, r in city) == 1_439_441_018


async def test_metric_updates_end_at_the_table_values(
    settings: Settings, replayed: dict[tuple[str, str], tuple[int, int, int]], hotel_csv: Path
) -> None:
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in await read_topic(settings.kafka_bootstrap, REALTIME_METRICS_UPDATES):
        doc = orjson.loads(rec.value)
        if (
            doc.get("kind") == "metric_update"
            and doc["organization_id"] == ORG
            and doc["window"]["grain"] == "month"
        ):
            last[(doc["key"], doc["window"]["period"])] = doc["new"]
    got = {
        k: (v["bookings"], v["cancellations"], v["revenue_minor"]["EUR"]) for k, v in last.items()
    }
    assert got == replayed
    lead = {k: (v["lead_time_days_sum"], v["lead_time_bookings"]) for k, v in last.items()}
    assert lead == lead_times_from_csv(hotel_csv)


def lead_times_from_csv(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(venue, arrival month) → (Σ lead_time, rows), straight from the CSV (every row is a
    booking stating its lead time; the negative-ADR row is invalid and not counted)."""
    out: dict[tuple[str, str], list[int]] = {}
    for b in read_csv(path):  # booked_on is the arrival less the row's lead time
        acc = out.setdefault((b.venue, f"{b.arrival:%Y-%m}"), [0, 0])
        acc[0] += (b.arrival - b.booked_on).days
        acc[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


async def test_negative_adr_booking_is_dead_lettered_with_reason(
    settings: Settings, replayed: Any
) -> None:
    records = await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
    mine = [rec for rec in records if rec.key == f"{ORG}/resort-hotel".encode()]
    assert len(mine) == 1
    headers = dict(mine[0].headers)
    assert headers["dlq.field"] == b"$.amount_minor"
    assert headers["dlq.source.topic"] == WEDDING_BOOKINGS.encode()
    payload = orjson.loads(mine[0].value)
    assert payload["amount_minor"] == -6380  # -6.38 × 10 nights, byte for byte as produced


async def test_replaying_the_file_again_changes_nothing(
    settings: Settings,
    main_worker: WorkerProcess,
    hotel_csv: Path,
    replayed: dict[tuple[str, str], tuple[int, int, int]],
) -> None:
    summary = await replay_hotel_bookings(settings, hotel_csv)
    assert summary.events == 163_614
    assert summary.history_rows_new == 0  # the history already holds every booking
    await wait_for_lag_zero(settings.kafka_bootstrap, GROUP, WEDDING_BOOKINGS, timeout_s=900)
    _, body = await full_report(settings, main_worker)
    assert report_figures(body) == replayed
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        n = await conn.fetchval("SELECT count(*) FROM bookings WHERE organization_id = $1", ORG)
    finally:
        await conn.close()
    assert n == 119_389


async def test_a_filtered_report_holds_only_the_allowed_venue(
    settings: Settings,
    main_worker: WorkerProcess,
    replayed: dict[tuple[str, str], tuple[int, int, int]],
) -> None:
    body = {**FULL_RANGE, "output_formats": ["csv"], "data_filters": {"venue_id": ["city-hotel"]}}
    status = await request_report_http(main_worker.url, settings, ORG, body)
    assert status["status"] == "completed", status
    csv_bytes = await download(
        main_worker.url, settings, ORG, status["artifacts"][0]["download_url"]
    )
    assert report_figures(csv_bytes) == {k: v for k, v in replayed.items() if k[0] == "city-hotel"}
    # a venue the organisation does not have: refused at the door, nothing recorded
    bad = {**FULL_RANGE, "report_id": "atlantis-1", "data_filters": {"venue_id": ["atlantis"]}}
    async with aiohttp.ClientSession(main_worker.url) as s:
        headers = auth(settings, ORG)
        async with s.post(f"/orgs/{ORG}/reports", json=bad, headers=headers) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        async with s.get(f"/orgs/{ORG}/reports/atlantis-1", headers=headers) as r:
            assert r.status == 404
    assert error["field"] == "$.data_filters.venue_id"
    assert error["reason"] == f"unknown venue(s) ['atlantis'] in organisation {ORG!r}"
