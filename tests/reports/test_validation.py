"""Validation of a report's input against a hand-built history with one or more of each defect.

Every expected count and example id below is read off the rows defined here (hand-checked),
not computed by the code under test. A second organisation holds the same kinds of defect and
must never show up in the first one's findings.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.reports.model import ReportTable
from stream_app.reports.types.base import ReportContext
from stream_app.reports.validation import (
    ValidationResult,
    ValidationThresholds,
    validate_for_report,
    validate_report_input,
)
from stream_app.schemas.reports import new_report_request
from stream_app.settings import Settings
from tests.reports.history_columns import PAYMENT_COLUMNS

ORG = Organization("val-org", "Validation", "Europe/Lisbon", "EUR")
NOISE = Organization("val-noise", "Noise", "Europe/Lisbon", "EUR")
CLEAN = Organization("val-clean", "Clean", "Europe/Lisbon", "EUR")
NOW = datetime(2024, 10, 1, tzinfo=UTC)
FROM, TO = date(2024, 1, 1), date(2024, 12, 31)


def ts(y: int, m: int, d: int, h: int = 12) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def booking(org: str, id_: str, **kw: Any) -> tuple[Any, ...]:
    b: dict[str, Any] = {
        "venue_id": "v1",
        "supplier_id": None,
        "client_id": f"c-{id_}",
        "wedding_id": None,
        "service_date": date(2024, 6, 1),
        "nights": 1,
        "booked_at": ts(2024, 1, 10),
        "amount_minor": 100_000,
        "currency": "EUR",
        "status": "booked",
        "cancelled_at": None,
        "source_event_id": f"e-{id_}",
    }
    b.update(kw)
    return (org, id_, *b.values())


BOOKING_COLUMNS = (
    "organization_id", "id", "venue_id", "supplier_id", "client_id", "wedding_id",
    "service_date", "nights", "booked_at", "amount_minor", "currency", "status",
    "cancelled_at", "source_event_id",
)  # fmt: skip


def org_bookings(org: str) -> list[tuple[Any, ...]]:
    dup = {"client_id": "c9", "venue_id": "v2", "service_date": date(2024, 7, 6),
           "booked_at": ts(2024, 2, 2), "amount_minor": 50_000}  # fmt: skip
    return [
        booking(org, "b-ok-1", amount_minor=300_000),
        booking(org, "b-ok-2", service_date=date(2024, 6, 8), amount_minor=150_000),
        booking(org, "b-novenue-1", venue_id=None),
        booking(org, "b-novenue-2", venue_id=None),
        booking(org, "b-noclient", client_id=None, amount_minor=40_000),
        booking(org, "b-cancel-noat", status="cancelled"),
        booking(org, "b-cancel-before", status="cancelled", cancelled_at=ts(2024, 1, 9)),
        booking(org, "b-absurd", amount_minor=100_000_001),
        booking(org, "b-jpy", amount_minor=5_000_000, currency="JPY"),
        booking(org, "b-usd", amount_minor=20_000, currency="USD"),
        booking(org, "b-abc", amount_minor=20_000, currency="ABC"),
        booking(org, "b-nights", nights=400),
        booking(org, "b-future", service_date=date(2024, 12, 31), booked_at=ts(2024, 11, 1)),
        booking(
            org,
            "b-late",
            service_date=date(2024, 3, 1),
            booked_at=ts(2024, 3, 5),
            amount_minor=30_000,
        ),
        # 23:30 UTC on 2024-06-30 is 00:30 on 2024-07-01 in Lisbon (WEST): booked after
        booking(
            org,
            "b-late-local",
            service_date=date(2024, 6, 30),
            booked_at=datetime(2024, 6, 30, 23, 30, tzinfo=UTC),
        ),
        booking(org, "b-early", service_date=date(2024, 9, 1), booked_at=ts(1985, 1, 1)),
        booking(org, "b-longlead", service_date=date(2024, 9, 1), booked_at=ts(2018, 1, 1)),
        booking(org, "b-dup-1", **dup),
        booking(org, "b-dup-2", **dup),
        booking(org, "b-dup-3", **dup),
        booking(org, "b-src-1", source_event_id="evt-1"),
        booking(org, "b-src-2", source_event_id="evt-1", amount_minor=100_001),
        # outside the range: defects here are not counted
        booking(
            org, "b-outside", service_date=date(2023, 12, 31), venue_id=None, status="cancelled"
        ),
    ]


def org_payments(org: str) -> list[tuple[Any, ...]]:
    def pay(id_: str, booking_id: str, amount: int, at: datetime, **kw: Any) -> tuple[Any, ...]:
        return (org, id_, booking_id, kw.get("kind", "payment"), amount,
                kw.get("currency", "EUR"), at)  # fmt: skip

    return [
        pay("p-ok-1", "b-ok-1", 100_000, ts(2024, 1, 11)),
        pay("p-ok-2", "b-ok-2", 50_000, ts(2024, 1, 12)),
        pay("p-orphan-1", "b-missing", 1_000, ts(2024, 2, 1)),
        pay("p-orphan-2", "b-missing", 1_000, ts(2024, 2, 2)),
        pay("p-cur", "b-ok-2", 100, ts(2024, 2, 3), currency="USD"),
        pay("p-refund-pay", "b-late", 10_000, ts(2024, 3, 5)),
        pay("p-refund-ref", "b-late", 20_000, ts(2024, 3, 6), kind="refund"),
        pay("p-over-1", "b-noclient", 30_000, ts(2024, 3, 7)),
        pay("p-over-2", "b-noclient", 20_000, ts(2024, 3, 8)),
        pay("p-future", "b-ok-2", 1_000, ts(2024, 12, 1)),
        pay("p-dup-a", "b-ok-1", 50_000, ts(2024, 4, 1)),
        pay("p-dup-b", "b-ok-1", 50_000, ts(2024, 4, 1)),
        pay("p-absurd", "b-absurd", 100_000_001, ts(2024, 4, 2)),
        # 2023-12-31 23:30 UTC is still 2023 in Lisbon (WET = UTC): outside the range
        pay("p-outside", "b-missing", 1_000, datetime(2023, 12, 31, 23, 30, tzinfo=UTC)),
    ]


def org_feedback(org: str) -> list[tuple[Any, ...]]:
    def fb(id_: str, client: str | None, booking_id: str | None, rating: int | None,
           nps: int | None, at: datetime | None = None) -> tuple[Any, ...]:  # fmt: skip
        return (org, id_, client, booking_id, rating, nps, at or ts(2024, 7, 1))

    return [
        fb("f-ok", "c1", "b-ok-1", 5, 10),
        fb("f-orphan", "c2", "b-gone", 4, 8),
        fb("f-empty", "c3", "b-ok-2", None, None),
        fb("f-nobooking", "c4", None, 3, 6),
        fb("f-dup-1", "c5", "b-ok-2", 5, 9),
        fb("f-dup-2", "c5", "b-ok-2", 4, 9),
        fb("f-future", "c6", "b-ok-1", 5, 10, ts(2024, 12, 1)),
    ]


def noise_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """val-noise: a venue-less booking, and a payment of ``b-ok-1`` (which only val-org has)."""
    bookings = [booking(NOISE.id, "b-novenue-9", venue_id=None)]
    payments = [(NOISE.id, "p-n", "b-ok-1", "payment", 5, "EUR", ts(2024, 5, 5))]
    return bookings, payments, []


async def load(conn: asyncpg.Connection, org: Organization, rows: Any) -> None:
    bookings, payments, feedback = rows
    await upsert_organization(conn, org)
    for table in ("feedback", "payments", "bookings"):
        await conn.execute(f"DELETE FROM {table} WHERE organization_id = $1", org.id)
    await conn.copy_records_to_table("bookings", records=bookings, columns=BOOKING_COLUMNS)
    await conn.copy_records_to_table(
        "payments",
        records=payments,
        columns=PAYMENT_COLUMNS,
    )
    await conn.copy_records_to_table(
        "feedback",
        records=feedback,
        columns=(
            "organization_id",
            "id",
            "client_id",
            "booking_id",
            "rating",
            "nps",
            "submitted_at",
        ),
    )


@pytest.fixture(scope="module")
async def validated(settings: Settings) -> dict[str, ValidationResult]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await load(conn, ORG, (org_bookings(ORG.id), org_payments(ORG.id), org_feedback(ORG.id)))
        await load(conn, NOISE, noise_rows())
        clean = [booking(CLEAN.id, "b-1"), booking(CLEAN.id, "b-2", client_id="c-x")]
        clean_pay = [(CLEAN.id, "p-1", "b-1", "payment", 100_000, "EUR", ts(2024, 1, 20))]
        clean_fb = [(CLEAN.id, "f-1", "c-b-1", "b-1", 5, 10, ts(2024, 7, 1))]
        await load(conn, CLEAN, (clean, clean_pay, clean_fb))
        return {
            org.id: await validate_report_input(conn, org, FROM, TO, now=NOW)
            for org in (ORG, NOISE, CLEAN)
        }
    finally:
        await conn.close()


EXPECTED: list[tuple[str, str, str, str, int, tuple[str, ...]]] = [
    # severity, table, field, check, count, example ids (smallest first, at most 5)
    ("error", "bookings", "currency", "unknown_currency", 1, ("b-abc",)),
    ("error", "bookings", "cancelled_at", "null", 1, ("b-cancel-noat",)),
    ("error", "bookings", "cancelled_at", "before_booking", 1, ("b-cancel-before",)),
    ("error", "bookings", "booked_at", "date_out_of_range", 2, ("b-early", "b-future")),
    ("error", "bookings", "source_event_id", "duplicate_source_event", 1, ("b-src-2",)),
    ("warning", "bookings", "venue_id", "null", 2, ("b-novenue-1", "b-novenue-2")),
    ("warning", "bookings", "client_id", "null", 1, ("b-noclient",)),
    ("warning", "bookings", "amount_minor", "absurd_amount", 2, ("b-absurd", "b-jpy")),
    ("warning", "bookings", "nights", "absurd_nights", 1, ("b-nights",)),
    ("warning", "bookings", "booked_at", "booked_after_service", 2, ("b-late", "b-late-local")),
    ("warning", "bookings", "booked_at", "long_lead", 2, ("b-early", "b-longlead")),
    ("warning", "bookings", "currency", "mixed_currency", 3, ("b-abc", "b-jpy", "b-usd")),
    ("warning", "bookings", "id", "duplicate", 2, ("b-dup-2", "b-dup-3")),
    ("error", "payments", "occurred_at", "date_out_of_range", 1, ("p-future",)),
    ("error", "payments", "booking_id", "orphan", 2, ("p-orphan-1", "p-orphan-2")),
    ("error", "payments", "currency", "currency_mismatch", 1, ("p-cur",)),
    ("warning", "payments", "amount_minor", "absurd_amount", 1, ("p-absurd",)),
    ("warning", "payments", "id", "duplicate", 1, ("p-dup-b",)),
    ("warning", "payments", "amount_minor", "refunds_exceed_payments", 1, ("b-late",)),
    ("warning", "payments", "amount_minor", "overpaid", 1, ("b-noclient",)),
    ("error", "feedback", "submitted_at", "date_out_of_range", 1, ("f-future",)),
    ("error", "feedback", "booking_id", "orphan", 1, ("f-orphan",)),
    ("error", "feedback", "rating", "null", 1, ("f-empty",)),
    ("warning", "feedback", "booking_id", "null", 1, ("f-nobooking",)),
    ("warning", "feedback", "id", "duplicate", 1, ("f-dup-2",)),
]


async def test_each_defect_is_found_with_its_exact_count(
    validated: dict[str, ValidationResult],
) -> None:
    result = validated[ORG.id]
    got = {
        (f.severity, f.table, f.field, f.check, f.count, f.example_ids)
        for f in (*result.errors, *result.warnings)
    }
    assert got == set(EXPECTED)
    assert not result.ok and result.checks_run == 29
    # checks the schema makes impossible (CHECK constraints) pass: nothing negative, no rating 9
    assert result.find("bookings", "amount_minor", "negative_amount") is None
    assert result.find("feedback", "rating", "out_of_range") is None


async def test_other_tenants_and_clean_data(validated: dict[str, ValidationResult]) -> None:
    noise = validated[NOISE.id]
    got = {
        (f.table, f.field, f.check, f.count, f.example_ids) for f in noise.errors + noise.warnings
    }
    # its payment of b-ok-1 is an orphan there: val-org's booking is not visible to it
    assert got == {
        ("bookings", "venue_id", "null", 1, ("b-novenue-9",)),
        ("payments", "booking_id", "orphan", 1, ("p-n",)),
    }
    clean = validated[CLEAN.id]
    assert clean.ok and clean.lines() == ()


async def test_lines_fit_the_report_model(validated: dict[str, ValidationResult]) -> None:
    result = validated[ORG.id]
    lines = result.lines()
    assert len(lines) == len(EXPECTED)
    assert lines[0].startswith("error: ") and lines[-1].startswith("warning: ")
    assert "error: payments.booking_id: 2 payments whose booking does not exist" in "\n".join(lines)
    assert "(e.g. p-orphan-1, p-orphan-2)" in "\n".join(lines)
    table = ReportTable(
        report_type="monthly_booking_summary",
        organization_id=ORG.id,
        organization_name=ORG.name,
        time_zone=ORG.time_zone,
        date_from=FROM,
        date_to=TO,
        columns=(),
        rows=(),
        validation=lines,
    )
    assert table.validation == lines


async def test_a_report_builder_gets_the_findings(
    settings: Settings, validated: dict[str, ValidationResult]
) -> None:
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=1)
    try:
        request = new_report_request(
            NOISE.id,
            "tester",
            "monthly_booking_summary",
            FROM,
            TO,
            ["csv"],
            report_id="r-validation",
            requested_at=NOW,
        )
        ctx = ReportContext(request, NOISE, [], pool, _no_table_rows)
        checked = await validate_for_report(ctx, tables=("payments",))
    finally:
        await pool.close()
    # val-noise's one payment names a booking only val-org has (hand-built above)
    assert checked.lines() == (
        "error: payments.booking_id: 1 payments whose booking does not exist (e.g. p-n)",
    )


async def _no_table_rows(
    org: str, venues: list[str], date_from: date, date_to: date
) -> dict[str, dict[str, Any]]:
    return {}


async def test_table_selection_and_bad_arguments(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        only = await validate_report_input(conn, ORG, FROM, TO, tables=("feedback",), now=NOW)
        assert {f.table for f in only.errors + only.warnings} == {"feedback"}
        assert only.checks_run == 6
        looser = ValidationThresholds(max_nights=400, max_amount_major=50_000)
        custom = await validate_report_input(conn, ORG, FROM, TO, tables=("bookings",), now=NOW)
        assert "stays longer than 365 nights" in "\n".join(custom.lines())
        custom = await validate_report_input(
            conn, ORG, FROM, TO, tables=("bookings",), now=NOW, thresholds=looser
        )
        assert custom.find("bookings", "nights", "absurd_nights") is None  # 400 is not > 400
        absurd = custom.find("bookings", "amount_minor", "absurd_amount")
        # above 50,000 major units: EUR 50,000.00 = 5,000,000 cents (b-absurd; every other EUR
        # row is at most 300,000 cents) and JPY 50,000 = 50,000 (b-jpy: 5,000,000 yen)
        assert absurd is not None and absurd.example_ids == ("b-absurd", "b-jpy")
        assert "above 50,000 major units" in absurd.message
        with pytest.raises(ValueError, match="date_to"):
            await validate_report_input(conn, ORG, TO, FROM)
        with pytest.raises(ValueError, match="tables"):
            await validate_report_input(conn, ORG, FROM, TO, tables=("weddings",))  # type: ignore[arg-type]
    finally:
        await conn.close()
