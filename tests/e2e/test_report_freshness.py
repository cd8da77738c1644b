"""The report cache never serves a report whose PostgreSQL inputs changed, however they changed.

Each test asks a real worker for a report over HTTP, changes the history straight in
PostgreSQL (as an operator would in psql: no Kafka event, no API call), asks again, and checks
that the second answer was generated anew (cache level ``miss``) and shows the new value; a
third request shows the cache still answers once nothing changed. The expected figures are
literals of the rows written here.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from stream_app.db.tenancy import Venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import register_org
from tests.e2e.helpers import download, request_report_http

_RUN = uuid.uuid4().hex[:6]
COMPLIANCE: dict[str, Any] = {
    "report_type": "compliance",
    "date_from": "2026-01-01",
    "date_to": "2026-02-28",
    "output_formats": ["json"],
}


async def sql(settings: Settings, statement: str, *args: Any) -> None:
    """Run one statement straight in PostgreSQL (the superuser of the test cluster)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def new_org(settings: Settings, prefix: str, zone: str = "Europe/Lisbon") -> str:
    """An organisation with venue ``v1`` ("Quinta Velha") and booking ``b1`` of EUR 1,000.00
    (service 2026-01-20, booked 2026-01-31 23:30 UTC), no payment."""
    org = f"{prefix}-{_RUN}"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await register_org(conn, org, zone=zone, venues=[Venue("v1", "Quinta Velha", 2)])
        await conn.execute(
            "INSERT INTO bookings (organization_id, id, venue_id, service_date, booked_at,"
            " amount_minor, currency, status) VALUES ($1, 'b1', 'v1', '2026-01-20', $2,"
            " 100000, 'EUR', 'booked')",
            org,
            datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        )
    finally:
        await conn.close()
    return org


async def add_payment(settings: Settings, org: str, amount_minor: int) -> None:
    """Insert payment ``p1`` of booking ``b1`` (EUR, 21 January 2026) straight into PostgreSQL."""
    await sql(
        settings,
        "INSERT INTO payments (organization_id, id, booking_id, kind, amount_minor, currency,"
        " occurred_at) VALUES ($1, 'p1', 'b1', 'payment', $2, 'EUR', $3)",
        org,
        amount_minor,
        datetime(2026, 1, 21, 9, 0, tzinfo=UTC),
    )


async def report_json(
    worker: WorkerProcess, settings: Settings, org: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(status, the JSON file's document) of a completed report of ``body``."""
    status = await request_report_http(worker.url, settings, org, body)
    assert status["status"] == "completed", status
    link = next(a for a in status["artifacts"] if a["format"] == "json")
    doc = orjson.loads(await download(worker.url, settings, org, link["download_url"]))
    return status, doc


def section(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(next(s for s in doc["sections"] if s["name"] == name)["rows"])


def eur_paid(doc: dict[str, Any]) -> Decimal:
    row = next(r for r in section(doc, "payment_totals") if r["currency"] == "EUR")
    return Decimal(str(row["paid"]))


def bookings_by_month(doc: dict[str, Any]) -> dict[str, int]:
    return {r["month"]: int(r["bookings"]) for r in section(doc, "operational_metrics")}


async def test_a_payment_inserted_in_postgresql_shows_in_the_next_report(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    org = await new_org(settings, "fresh-pay")
    first, doc = await report_json(main_worker, settings, org, COMPLIANCE)
    assert first["cache"]["level"] == "miss"
    assert eur_paid(doc) == Decimal("0")

    await add_payment(settings, org, 25050)
    second, doc = await report_json(main_worker, settings, org, COMPLIANCE)
    assert second["cache"]["level"] == "miss", second["cache"]
    assert second["cache"]["key"] == first["cache"]["key"]  # same request, new inputs
    assert eur_paid(doc) == Decimal("250.50")

    third, doc = await report_json(main_worker, settings, org, COMPLIANCE)
    assert third["cache"]["level"] == "l1"
    assert third["cache"]["source_report_id"] == second["report_id"]
    assert eur_paid(doc) == Decimal("250.50")


async def test_a_new_time_zone_moves_the_months(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    # booked 2026-01-31 23:30 UTC: January in Lisbon (UTC+0), 1 February 08:30 in Tokyo
    org = await new_org(settings, "fresh-zone", zone="Europe/Lisbon")
    first, doc = await report_json(main_worker, settings, org, COMPLIANCE)
    assert first["cache"]["level"] == "miss"
    assert bookings_by_month(doc) == {"2026-01": 1, "2026-02": 0}
    assert doc["report"]["time_zone"] == "Europe/Lisbon"

    await sql(settings, "UPDATE organizations SET time_zone = 'Asia/Tokyo' WHERE id = $1", org)
    second, doc = await report_json(main_worker, settings, org, COMPLIANCE)
    assert second["cache"]["level"] == "miss", second["cache"]
    assert bookings_by_month(doc) == {"2026-01": 0, "2026-02": 1}
    assert doc["report"]["time_zone"] == "Asia/Tokyo"


async def test_a_renamed_venue_shows_its_new_name(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    org = await new_org(settings, "fresh-venue")
    body = {
        "report_type": "monthly_booking_summary",
        "date_from": "2026-01-01",
        "date_to": "2026-01-31",
        "output_formats": ["csv"],
    }

    async def venue_names(status: dict[str, Any]) -> set[str]:
        link = next(a for a in status["artifacts"] if a["format"] == "csv")
        text = (await download(main_worker.url, settings, org, link["download_url"])).decode(
            "utf-8-sig"
        )
        table = text.split("\r\n\r\n")[0]  # the main table (blocks are separated by a blank line)
        return {r["venue_name"] for r in csv.DictReader(io.StringIO(table))}

    first = await request_report_http(main_worker.url, settings, org, body)
    assert first["status"] == "completed", first
    assert await venue_names(first) == {"Quinta Velha"}

    await sql(settings, "UPDATE venues SET name = 'Quinta Nova' WHERE organization_id = $1", org)
    second = await request_report_http(main_worker.url, settings, org, body)
    assert second["cache"]["level"] == "miss", second["cache"]
    assert await venue_names(second) == {"Quinta Nova"}


async def test_an_edit_in_one_organisation_leaves_the_others_cache_alone(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    edited = await new_org(settings, "fresh-edited")
    other = await new_org(settings, "fresh-other")
    first_edited, _ = await report_json(main_worker, settings, edited, COMPLIANCE)
    first_other, _ = await report_json(main_worker, settings, other, COMPLIANCE)

    await add_payment(settings, edited, 10000)
    again_other, doc = await report_json(main_worker, settings, other, COMPLIANCE)
    assert again_other["cache"]["level"] == "l1", again_other["cache"]
    assert again_other["cache"]["source_report_id"] == first_other["report_id"]
    assert eur_paid(doc) == Decimal("0")
    again_edited, doc = await report_json(main_worker, settings, edited, COMPLIANCE)
    assert again_edited["cache"]["level"] == "miss"
    assert again_edited["cache"]["source_report_id"] is None or (
        again_edited["cache"]["source_report_id"] != first_edited["report_id"]
    )
    assert eur_paid(doc) == Decimal("100.00")
