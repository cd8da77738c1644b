"""A large report streamed through server-side cursors into the renderers.

30,011 bookings (with payments and refunds) of one organisation, loaded with ``COPY``; the
compliance report built in a report session with small cursor batches, rendered to CSV and
JSON in a worker thread. The reconciliation's row count, ids and outstanding total equal the
figures computed here from the generated literals; the other tenant's rows are never read.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.reports import streaming
from stream_app.reports.streaming import open_session
from stream_app.reports.types import compliance
from stream_app.reports.types.base import ReportContext
from stream_app.schemas.reports import new_report_request
from tests.reports.history_columns import PAYMENT_COLUMNS
from tests.reports.rendering import csv_blocks, render_path

N = 30_011
DATE_FROM, DATE_TO = date(2026, 1, 1), date(2026, 12, 31)
BOOKED_AT = datetime(2025, 12, 1, tzinfo=UTC)


def amount(i: int) -> int:
    return 10_000 + (i * 37) % 5_000


def booking(i: int) -> tuple[str, str, date, int]:
    """(id, status, service date, amount) of booking ``i``: every 10th cancelled."""
    status = "cancelled" if i % 10 == 0 else "booked"
    return f"bk{i:06d}", status, date(2026, 1 + i % 12, 1 + i % 28), amount(i)


def payments(i: int) -> list[tuple[str, str, str, int]]:
    """(id, booking id, kind, amount) of booking ``i``: paid in full (i % 3 == 0), half
    paid with a refund of 100 (i % 3 == 1), nothing (i % 3 == 2)."""
    bid = f"bk{i:06d}"
    if i % 3 == 0:
        return [(f"p{i}", bid, "payment", amount(i))]
    if i % 3 == 1:
        return [(f"p{i}", bid, "payment", amount(i) // 2), (f"r{i}", bid, "refund", 100)]
    return []


def expected_outstanding_minor() -> int:
    """Σ over bookings not cancelled of max(amount − paid + refunded, 0), from the literals."""
    total = 0
    for i in range(N):
        _, status, _, booked = booking(i)
        if status == "cancelled":
            continue
        paid = sum(a for _, _, k, a in payments(i) if k == "payment")
        refunded = sum(a for _, _, k, a in payments(i) if k == "refund")
        total += max(booked - paid + refunded, 0)
    return total


@pytest_asyncio.fixture(scope="module")
async def org(pg_pool: asyncpg.Pool) -> AsyncIterator[Organization]:
    suffix = uuid.uuid4().hex[:8]
    mine = Organization(f"stream-{suffix}", "Stream", "Europe/Paris", "EUR")
    other = Organization(f"stream-other-{suffix}", "Other", "UTC", "EUR")
    async with pg_pool.acquire() as conn:
        for o in (mine, other):
            await upsert_organization(conn, o)
        for o, n in ((mine, N), (other, 50)):
            await conn.copy_records_to_table(
                "bookings",
                records=[
                    (o.id, bid, day, BOOKED_AT, amt, "EUR", status)
                    for bid, status, day, amt in map(booking, range(n))
                ],
                columns=(
                    "organization_id",
                    "id",
                    "service_date",
                    "booked_at",
                    "amount_minor",
                    "currency",
                    "status",
                ),
            )
            await conn.copy_records_to_table(
                "payments",
                records=[
                    (o.id, pid, bid, kind, amt, "EUR", BOOKED_AT)
                    for i in range(n)
                    for pid, bid, kind, amt in payments(i)
                ],
                columns=PAYMENT_COLUMNS,
            )
    yield mine
    async with pg_pool.acquire() as conn:
        await conn.execute("DELETE FROM organizations WHERE id = ANY($1)", [mine.id, other.id])


async def _no_venue_rows(*_: Any) -> dict[str, dict[str, Any]]:
    raise AssertionError("the compliance report reads no live table")


async def test_a_large_reconciliation_is_streamed_exactly(
    pg_pool: asyncpg.Pool, org: Organization, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_ROWS", 997)  # many batches, the last one partial
    request = new_report_request(
        org.id, "auditor", "compliance", DATE_FROM, DATE_TO, ["csv", "json"]
    )
    async with open_session(pg_pool, org.id, "compliance") as session:
        ctx = ReportContext(request, org, [], pg_pool, _no_venue_rows, session)
        table = await compliance.build_at(ctx, datetime.now(UTC))
        assert table.sections[1].name == "payment_reconciliation"
        csv_path = await asyncio.to_thread(render_path, tmp_path, "csv", table)
        json_path = await asyncio.to_thread(render_path, tmp_path, "json", table)
    raw_csv, raw_json = csv_path.read_bytes(), json_path.read_bytes()
    want_ids = sorted(f"bk{i:06d}" for i in range(N))
    want_outstanding = Decimal(expected_outstanding_minor()) / 100

    # CSV: the reconciliation block
    blocks = csv_blocks(raw_csv)
    recon = next(b for b in blocks if b and b[0] == ["# " + table.sections[1].title])
    header, rows = recon[1], recon[2:]
    col = {name: i for i, name in enumerate(header)}
    assert [r[col["booking_id"]] for r in rows] == want_ids
    assert sum(Decimal(r[col["outstanding"]] or 0) for r in rows) == want_outstanding
    assert sum(r[col["status"]] == "cancelled" for r in rows) == len(range(0, N, 10))

    # JSON: the same rows, and the totals computed in SQL equal the sum over them
    doc = orjson.loads(raw_json)
    section = next(s for s in doc["sections"] if s["name"] == "payment_reconciliation")
    assert [r["booking_id"] for r in section["rows"]] == want_ids
    totals = next(s for s in doc["sections"] if s["name"] == "payment_totals")["rows"]
    assert [(t["currency"], Decimal(t["outstanding"])) for t in totals] == [
        ("EUR", want_outstanding)
    ]
    assert totals[0]["bookings"] == N - len(range(0, N, 10))
    streamed = [q for q in session.queries if q.rows == N]
    assert len(streamed) == 2  # one cursor reading per format


async def test_a_stopped_report_stops_reading_at_the_next_batch(
    pg_pool: asyncpg.Pool, org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "BATCH_ROWS", 997)
    stop = threading.Event()
    async with open_session(pg_pool, org.id, "compliance", stop) as session:
        rows = session.rows(
            compliance.BALANCES_SQL, (org.id, DATE_FROM, DATE_TO), lambda r: [r["id"]]
        )

        def read() -> list[str]:
            seen = []
            for row in rows:
                seen.append(str(row[0]))
                if len(seen) == 997 + 500:  # inside the second batch
                    stop.set()
            return seen

        seen = await asyncio.to_thread(read)
    assert seen == [f"bk{i:06d}" for i in range(1994)]
    assert [q.rows for q in session.queries] == [1994]  # two whole batches, then stopped
