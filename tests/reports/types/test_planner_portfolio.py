"""``planner_portfolio`` on a generated wedding planner in the test PostgreSQL.

Per-office figures, year-over-year growth and the benchmark against the organisation's mean
per office are computed again below in plain Python over the generated rows and compared
exactly; the report is rendered in all five formats and the main table read back.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from stream_app.reports.types.base import ReportInputError
from stream_app.reports.types.planner_portfolio import COLUMNS
from stream_app.settings import Settings
from stream_app.synthetic.generator import Chunk, SynthConfig
from tests.synthetic import helpers as synth
from tests.synthetic.helpers import half_even, major, pct

ORG = "test-planner"
CONFIG = SynthConfig("planner", 8_000, seed=3, organization_id=ORG)
FROM, TO = date(2025, 1, 1), date(2025, 6, 30)
PRIOR_FROM, PRIOR_TO = date(2024, 1, 1), date(2024, 6, 30)


@pytest.fixture(scope="module")
async def rows(settings: Settings) -> Chunk:
    return await synth.load(settings, CONFIG)


def expected(rows: Chunk) -> tuple[list[list[Any]], list[Any]]:
    offices = sorted(rows["offices"], key=lambda o: o[1])
    n = len(offices)
    figures: dict[str, list[int]] = {o[1]: [0, 0, 0, 0, 0] for o in offices}
    for b in rows["bookings"]:
        f = figures[b[4]]
        if FROM <= b[7] <= TO:
            f[0] += 1
            if b[12] == "cancelled":
                f[1] += 1
            else:
                f[2] += b[10]
        if PRIOR_FROM <= b[7] <= PRIOR_TO and b[12] != "cancelled":
            f[3] += 1
            f[4] += b[10]
    total_bookings = sum(f[0] for f in figures.values())
    total_cancelled = sum(f[1] for f in figures.values())
    total_revenue = sum(f[2] for f in figures.values())
    total_prior = sum(f[4] for f in figures.values())
    org_rate = pct(total_cancelled, total_bookings)
    assert org_rate is not None and 0 < total_cancelled < total_bookings
    assert Decimal(0) < Decimal(org_rate) < Decimal(100)
    out = []
    for o in offices:
        bookings, cancelled, revenue, prior_weddings, prior_revenue = figures[o[1]]
        weddings = bookings - cancelled
        rate = pct(cancelled, bookings)
        assert rate is not None
        out.append(
            [o[1], o[2], o[3], "CAD", bookings, weddings, rate, major(revenue),
             major(half_even(Decimal(revenue) / weddings)), prior_weddings, major(prior_revenue),
             pct(weddings - prior_weddings, prior_weddings),
             pct(revenue - prior_revenue, prior_revenue),
             pct(revenue * n, total_revenue),
             str(Decimal(rate) - Decimal(org_rate))]
        )  # fmt: skip
    weddings = total_bookings - total_cancelled
    benchmark = [
        "CAD", n, total_bookings, weddings, org_rate, major(total_revenue),
        major(half_even(Decimal(total_revenue) / n)), pct(weddings, n * 100),
        major(half_even(Decimal(total_revenue) / weddings)), major(total_prior),
        pct(total_revenue - total_prior, total_prior),
    ]  # fmt: skip
    return out, benchmark


async def test_planner_portfolio(rows: Chunk, settings: Settings, tmp_path: Path) -> None:
    table = await synth.build(settings, "planner_portfolio", ORG, FROM, TO)
    want, benchmark = expected(rows)
    assert len(want) == 4  # 8,000 weddings → 4 offices
    synth.assert_rows(table.rows, COLUMNS, want)
    section = table.sections[0]
    assert section.name == "benchmark"
    synth.assert_rows(section.rows, section.columns, [benchmark])
    # the revenue index averages 100 over the offices (mean per office = 100)
    indexes = [Decimal(r[13]) for r in want]
    assert abs(sum(indexes, Decimal(0)) / len(indexes) - 100) < Decimal("0.01")
    kpis = {k.label: k.value for k in table.kpis}
    assert kpis["Offices"] == "4"
    assert kpis["Revenue growth (CAD)"] == f"{benchmark[10]}%"

    files = synth.render_and_read(table, tmp_path)
    synth.check_files(files, table, {"": want, "benchmark": [benchmark]})


async def test_an_office_without_bookings_has_a_zero_row(rows: Chunk, settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(
            "INSERT INTO offices (organization_id, id, name, city) VALUES ($1, 'of-99', $2, $3)",
            ORG,
            "Évora Yellowknife",
            "Yellowknife",
        )
        table = await synth.build(settings, "planner_portfolio", ORG, FROM, TO)
    finally:
        await conn.execute("DELETE FROM offices WHERE organization_id = $1 AND id = 'of-99'", ORG)
        await conn.close()
    last = list(table.rows)[-1]
    assert last == [
        "of-99", "Évora Yellowknife", "Yellowknife", "CAD", 0, 0, None, "0.00", None, 0, "0.00",
        None, None, "0.00", None,
    ]  # fmt: skip
    # five offices now: each other office's index is its revenue / (total / 5)
    want, _ = expected(rows)
    total = sum(int(Decimal(r[7]) * 100) for r in want)
    for row, w in zip(list(table.rows)[:-1], want, strict=True):
        assert row[13] == pct(int(Decimal(w[7]) * 100) * 5, total)


async def test_no_offices_is_refused_even_with_history(settings: Settings) -> None:
    await synth.load(
        settings, SynthConfig("photography", 1_000, 1, organization_id="test-no-offices")
    )
    with pytest.raises(ReportInputError, match=r"'test-no-offices' has no offices"):
        await synth.build(settings, "planner_portfolio", "test-no-offices", FROM, TO)


async def test_bookings_without_a_registered_office_are_named_not_dropped_silently(
    rows: Chunk, settings: Settings
) -> None:
    """A trial user's bookings with no office, or an office not in ``offices``, were left
    out of every figure (€37,622.64) without a word."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    extra = [("b-ghost", "of-ghost", 415549, "booked"), ("b-none", None, 3346715, "completed"),
             ("b-gone", None, 999, "cancelled")]  # fmt: skip
    try:
        for bid, office, amount, status in extra:
            await conn.execute(
                "INSERT INTO bookings (organization_id, id, office_id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, $2, $3, '2025-03-10',"
                " '2025-01-02T10:00:00Z', $4, 'CAD', $5)",
                ORG, bid, office, amount, status,
            )  # fmt: skip
        table = await synth.build(settings, "planner_portfolio", ORG, FROM, TO)
    finally:
        await conn.execute(
            "DELETE FROM bookings WHERE organization_id = $1 AND id = ANY($2::text[])",
            ORG,
            [e[0] for e in extra],
        )
        await conn.close()
    want, _ = expected(rows)  # the office rows are unchanged
    synth.assert_rows(table.rows, COLUMNS, want)
    assert (
        "warning: 3 booking(s) in the range have no office or one not registered in offices,"
        " left out of every figure (revenue not cancelled: CAD 37622.64; e.g. b-ghost, b-gone,"
        " b-none)"
    ) in table.validation
