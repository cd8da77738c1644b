"""The ``venue_occupancy`` report against a real PostgreSQL, on the real hotel data and on a
hand-built set with capacities > 1, capacity 0, unknown capacity, closures and two currencies.

Every expected figure comes from :class:`Expected`, a plain-Python computation over the rows
themselves (the CSV read with ``csv``, or the hand-built list), restating the report's
definitions without its SQL: a booking covers ``max(nights, 1)`` dates from its service date,
cancelled bookings cover none, capacity NULL counts as 1, a closed date is not available,
revenue is spread over the covered dates in whole minor units, the forecast repeats the same
month one year earlier.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import orjson
import pypdf
import pytest
import pytest_asyncio
from pptx import Presentation

from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.tenancy import (
    Organization,
    Venue,
    fetch_organization,
    fetch_venues,
    tenant_transaction,
    upsert_organization,
    upsert_venue,
)
from stream_app.replay import hotel
from stream_app.replay.produce import history_rows, register_hotel_organization
from stream_app.reports import registry
from stream_app.reports.model import Column, ReportTable
from stream_app.reports.types import occupancy
from stream_app.reports.types.base import CACHE_TTL_S, ReportContext, ReportInputError
from stream_app.schemas.reports import REPORT_TYPES, new_report_request
from tests.hotel_csv import read_csv
from tests.reports.rendering import csv_blocks, csv_cell, render_path, shown

EXPONENT = {"EUR": 2, "NZD": 2, "JPY": 0}
WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


# -- the independent computation --------------------------------------------------------------


@dataclass(frozen=True)
class B:
    """A booking as the test sees it."""

    venue_id: str | None
    service_date: date
    nights: int
    status: str
    amount_minor: int
    currency: str


def pct(n: int, d: int) -> str | None:
    """n/d × 100 to 2 decimals, half-even (Python's round on a Fraction), as text."""
    if d == 0:
        return None
    hundredths = round(Fraction(100 * 100 * n, d))
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def major(minor: int, currency: str) -> str:
    e = EXPONENT[currency]
    if e == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**e)
    return f"{sign}{q}.{r:0{e}d}"


def per(minor: int, units: int, currency: str) -> str | None:
    return None if units == 0 else major(round(Fraction(minor, units)), currency)


def months_between(first: date, last: date) -> list[str]:
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def plus_months(month: str, k: int) -> str:
    i = int(month[:4]) * 12 + int(month[5:]) - 1 + k
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


class Expected:
    """The report's figures, straight from the rows (no product code)."""

    def __init__(
        self,
        venues: list[tuple[str, str, int | None]],
        closed: set[tuple[str, date]],
        bookings: Sequence[B],
        d0: date,
        d1: date,
        currency: str,
    ) -> None:
        self.venues, self.d0, self.d1, self.currency = venues, d0, d1, currency
        self.cap = {v: (1 if c is None else c) for v, _, c in venues}
        self.known = [v for v, _, c in venues if c is not None]
        ids = set(self.cap)
        self.units: Counter[tuple[str, date]] = Counter()
        self.revenue: Counter[tuple[str, date, str]] = Counter()
        self.sold: Counter[tuple[str, date, str]] = Counter()  # unit-dates sold per currency
        self.closed_units = 0
        self.in_range: Counter[str] = Counter()
        self.cancelled: Counter[str] = Counter()
        self.held_by_month: Counter[tuple[str, str]] = Counter()
        self.first_month: dict[str, str] = {}
        self.unassigned = self.orphans = 0
        history_end = d1 + timedelta(days=1)
        if history_end.day != 1:
            history_end = d1.replace(day=1)
        self.last_month = (history_end - timedelta(days=1)).isoformat()[:7]
        for b in bookings:
            if d0 <= b.service_date <= d1:
                if b.venue_id is None:
                    self.unassigned += 1
                elif b.venue_id not in ids:
                    self.orphans += 1
            if b.venue_id not in ids:
                continue
            v = b.venue_id
            if d0 <= b.service_date <= d1:
                self.in_range[v] += 1
                self.cancelled[v] += b.status == "cancelled"
            month = b.service_date.isoformat()[:7]
            if b.service_date < history_end:
                self.first_month[v] = min(self.first_month.get(v, month), month)
                if b.status != "cancelled":
                    self.held_by_month[(v, month)] += 1
            if b.status == "cancelled":
                continue
            n = max(b.nights, 1)
            q, r = divmod(b.amount_minor, n)
            for i in range(n):
                day = b.service_date + timedelta(days=i)
                if not d0 <= day <= d1:
                    continue
                if (v, day) in closed:
                    self.closed_units += 1
                    continue
                self.units[(v, day)] += 1
                self.sold[(v, day, b.currency)] += 1
                self.revenue[(v, day, b.currency)] += q + (1 if i < r else 0)
        self.days = [d0 + timedelta(days=i) for i in range((d1 - d0).days + 1)]
        self.open = {v: [d for d in self.days if (v, d) not in closed] for v in self.cap}

    def counts(self, v: str, days: list[date]) -> tuple[int, int, int, int]:
        cap = self.cap[v]
        occupied = sum(min(self.units[(v, d)], cap) for d in days)
        return len(days), len(days) * cap, occupied, sum(self.units[(v, d)] for d in days)

    def month_days(self, v: str, month: str) -> list[date]:
        return [d for d in self.open[v] if d.isoformat()[:7] == month]

    def months(self) -> list[str]:
        return months_between(self.d0, self.d1)

    def main_rows(self) -> list[list[Any]]:
        rows = []
        for v, name, capacity in self.venues:
            for month in self.months():
                all_days = [d for d in self.days if d.isoformat()[:7] == month]
                a, s, o, u = self.counts(v, self.month_days(v, month))
                basis = "stated" if capacity is not None else "unknown"
                rows.append(
                    [v, name, month, capacity, basis, len(all_days), len(all_days) - a,
                     a, *self.slots(v, s, o), u]
                )  # fmt: skip
        return rows

    def weekday_rows(self) -> list[list[Any]]:
        rows = []
        for v, name, _ in self.venues:
            ta, _, _, tu = self.counts(v, self.open[v])
            for dow in range(1, 8):
                a, s, o, u = self.counts(v, [d for d in self.open[v] if d.isoweekday() == dow])
                index = pct(u * ta, a * tu) if a and tu else None
                rows.append(
                    [v, name, dow, WEEKDAY_NAMES[dow - 1], a, *self.slots(v, s, o), u, index]
                )
        return rows

    def revenue_of(self, v: str, days: list[date]) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for d in days:
            for c in EXPONENT:
                if (v, d, c) in self.revenue:
                    out[c] += self.revenue[(v, d, c)]
        return dict(out)

    def revenue_lines(self, v: str, name: str, days: list[date], *month: str) -> list[list[Any]]:
        """Revenue rows of venue ``v`` over ``days``, one per currency (``month`` after the name
        in the by-month section, absent in the by-venue one)."""
        a, s, _, _ = self.counts(v, days)
        slots = s if v in self.known else None
        return [
            [
                v,
                name,
                *month,
                c,
                a,
                slots,
                major(minor, c),
                minor,
                per(minor, a, c),
                None if slots is None else per(minor, slots, c),
                self.sold_of(v, days, c),
                per(minor, self.sold_of(v, days, c), c),  # ADR: revenue ÷ units sold
            ]
            for c, minor in sorted((self.revenue_of(v, days) or {self.currency: 0}).items())
        ]

    def sold_of(self, v: str, days: list[date], currency: str) -> int:
        return sum(self.sold[(v, d, currency)] for d in days)

    def revenue_rows(self) -> list[list[Any]]:
        return [
            row
            for v, name, _ in self.venues
            for month in self.months()
            for row in self.revenue_lines(v, name, self.month_days(v, month), month)
        ]

    def revenue_total_rows(self) -> list[list[Any]]:
        return [
            row for v, name, _ in self.venues for row in self.revenue_lines(v, name, self.open[v])
        ]

    def history(self, v: str) -> list[int]:
        if v not in self.first_month:
            return []
        first = self.first_month[v]
        months = [first]
        while months[-1] < self.last_month:
            months.append(plus_months(months[-1], 1))
        return [self.held_by_month[(v, m)] for m in months]

    def forecast_rows(self, horizon: int) -> list[list[Any]]:
        rows = []
        for v, name, _ in self.venues:
            h = self.history(v)
            if len(h) < 12:
                continue
            for k in range(1, horizon + 1):
                # same calendar month, in the last 12 months of history
                back = (k - 1) % 12 + 1
                value = h[len(h) - 12 + back - 1]
                basis = plus_months(self.last_month, back - 12)
                rows.append(
                    [v, name, plus_months(self.last_month, k), value, basis, occupancy.METHOD]
                )
        return rows

    def backtest(self) -> dict[str, tuple[Fraction, Fraction | None, int]]:
        """Per venue with 24 months of history: (MAE, MAPE %, months with actual > 0)."""
        out: dict[str, tuple[Fraction, Fraction | None, int]] = {}
        self.all_ape = []
        for v, _, _ in self.venues:
            h = self.history(v)
            if len(h) < 24:
                continue
            actual, forecast = h[-12:], h[-24:-12]  # each month vs the same month a year before
            errors = [abs(a - f) for a, f in zip(actual, forecast, strict=True)]
            ape = [Fraction(e, a) for e, a in zip(errors, actual, strict=True) if a]
            mape = sum(ape, Fraction(0)) * 100 / len(ape) if ape else None
            out[v] = (Fraction(sum(errors), 12), mape, len(ape))
            self.all_ape.extend(ape)
        return out

    all_ape: list[Fraction]

    def recommendations(self) -> set[tuple[str, str, str]]:
        out: set[tuple[str, str, str]] = set()
        for v, _, capacity in self.venues:
            ta, _, _, tu = self.counts(v, self.open[v])
            for dow in range(1, 8):
                days = [d for d in self.open[v] if d.isoweekday() == dow]
                a, s, o, u = self.counts(v, days)
                if a < 4:
                    continue
                period = f"{WEEKDAY_NAMES[dow - 1]}s"
                if capacity is not None and s and Fraction(o, s) < Fraction(40, 100):
                    out.add(("R1", v, period))
                if tu and Fraction(u, a) < Fraction(80, 100) * Fraction(tu, ta):
                    out.add(("R3", v, period))
            total_revenue = self.revenue_of(v, self.open[v])
            for month in self.months():
                days = self.month_days(v, month)
                a, s, o, _ = self.counts(v, days)
                if capacity is not None and s and Fraction(o, s) >= Fraction(90, 100):
                    out.add(("R2", v, month))
                if not a:
                    continue
                month_revenue = self.revenue_of(v, days)
                c = self.main_currency(v, total_revenue)
                if c is not None and Fraction(month_revenue.get(c, 0), a) < Fraction(
                    total_revenue[c], 2 * ta
                ):
                    out.add(("R5", v, month))
            if self.in_range[v] and Fraction(self.cancelled[v], self.in_range[v]) >= Fraction(1, 4):
                out.add(("R4", v, "range"))
        return out

    def main_currency(self, v: str, total_revenue: dict[str, int]) -> str | None:
        """R5's currency: the organisation's if the venue earned in it, else the one earned
        in during the most months (the first alphabetically among equals)."""
        earned = sorted(c for c, t in total_revenue.items() if t > 0)
        if not earned or self.currency in earned:
            return self.currency if earned else None
        months = {
            c: sum(1 for m in self.months() if self.revenue_of(v, self.month_days(v, m)).get(c, 0))
            for c in earned
        }
        return sorted(earned, key=lambda c: (-months[c], c))[0]

    def slots(self, v: str, s: int, o: int) -> list[Any]:
        """(available slots, occupied slots, rate): unknown (None) without a stated capacity."""
        return [s, o, pct(o, s)] if v in self.known else [None, None, None]

    def overall(self) -> tuple[int, int]:
        """Occupied and available slots of the venues with a stated capacity."""
        slots = occupied = 0
        for v in self.known:
            _, s, o, _ = self.counts(v, self.open[v])
            slots, occupied = slots + s, occupied + o
        return occupied, slots


def fixed2(value: Fraction) -> str:
    hundredths = round(value * 100)
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def check_report(table: ReportTable, exp: Expected, horizon: int = 12) -> None:
    """Every figure of ``table`` against ``exp``."""
    assert [list(r) for r in table.rows] == exp.main_rows()
    sections = {s.name: [list(r) for r in s.rows] for s in table.sections}
    assert sections["occupancy_by_weekday"] == exp.weekday_rows()
    assert sections["revpad_by_month"] == exp.revenue_rows()
    assert sections["revpad_by_venue"] == exp.revenue_total_rows()
    assert sections["demand_forecast"] == exp.forecast_rows(horizon)
    recs = sections["recommendations"]
    assert {(r[0], r[1], r[3]) for r in recs} == exp.recommendations()
    assert len(recs) == len(exp.recommendations())
    per_venue = exp.backtest()
    backtest = {r[0]: r for r in sections["forecast_backtest"]}
    all_errors_mae: list[Fraction] = []
    for v, (mae, mape, n_pct) in per_venue.items():
        row = backtest[v]
        assert row[5:10] == [12, fixed2(mae), None if mape is None else fixed2(mape), n_pct, "ok"]
        assert row[4] == exp.last_month and row[3] == plus_months(exp.last_month, -11)
        all_errors_mae.append(mae)
    for v, _, _ in exp.venues:
        if v not in per_venue:
            assert str(backtest[v][9]).startswith(("no back-test", "no forecast")), backtest[v]
    kpis = {k.label: k.value for k in table.kpis}
    occupied, slots = exp.overall()
    rate = pct(occupied, slots)
    assert kpis["Occupancy, all venues"] == ("n/a" if rate is None else f"{rate}%")
    assert kpis["Occupied of available slots"] == (
        f"{occupied:,} of {slots:,}" if exp.known else "n/a (no venue has a capacity)"
    )
    if per_venue:
        # pooled MAE = mean of all venue-month errors = mean of the venues' MAEs (12 each)
        pooled = sum(all_errors_mae, Fraction(0)) / len(all_errors_mae)
        assert kpis["Forecast back-test MAE (bookings per venue-month)"] == fixed2(pooled)
        pooled_mape = sum(exp.all_ape, Fraction(0)) * 100 / len(exp.all_ape)
        assert kpis["Forecast back-test MAPE"] == f"{fixed2(pooled_mape)}%"
        if len(exp.venues) > 1:
            row = backtest["all venues"]
            assert row[5:10] == [
                12 * len(per_venue), fixed2(pooled), fixed2(pooled_mape), len(exp.all_ape), "ok"
            ]  # fmt: skip
    revenue: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    dates = 0
    for v in exp.cap:
        revenue.update(exp.revenue_of(v, exp.open[v]))
        for c in EXPONENT:
            sold[c] += exp.sold_of(v, exp.open[v], c)
        dates += len(exp.open[v])
    for currency, minor in revenue.items():
        assert kpis[f"Revenue of available dates ({currency})"] == format(
            Decimal(major(minor, currency)), ","
        )
        assert kpis[f"ADR, all venues ({currency})"] == format(
            Decimal(str(per(minor, sold[currency], currency))), ","
        )
        assert kpis[f"RevPAD, all venues ({currency})"] == format(
            Decimal(str(per(minor, dates, currency))), ","
        )
    assert kpis["Recommendations"] == str(len(recs))
    forecast_total = sum(r[3] for r in exp.forecast_rows(horizon))
    assert kpis[f"Forecast bookings, next {horizon} months"] == f"{forecast_total:,}"


# -- the real hotel data ----------------------------------------------------------------------

HOTEL_FROM, HOTEL_TO = date(2015, 7, 1), date(2017, 8, 31)


def hotel_rows_from_csv(path: Path) -> list[B]:
    """The CSV's bookings (:func:`tests.hotel_csv.read_csv`) as this module's rows."""
    return [
        B(b.venue, b.arrival, b.nights, "cancelled" if b.cancelled else "booked", b.amount, "EUR")
        for b in read_csv(path)
    ]


@pytest_asyncio.fixture(scope="module")
async def hotel_loaded(pg_pool: asyncpg.Pool, hotel_csv: Path) -> AsyncIterator[None]:
    """The hotel history in PostgreSQL, loaded with the replay's COPY loader (no Kafka)."""
    events = hotel.map_file(hotel_csv)
    rows, skipped = history_rows(events)
    assert skipped == 1
    async with pg_pool.acquire() as conn:
        await register_hotel_organization(conn)
        await copy_bookings(conn, rows)
    yield


@pytest.fixture(scope="module")
def hotel_bookings(hotel_csv: Path) -> list[B]:
    return hotel_rows_from_csv(hotel_csv)


@pytest.fixture(scope="module")
def hotel_expected(hotel_bookings: list[B]) -> Expected:
    return Expected(
        [("city-hotel", "City Hotel (H2)", None), ("resort-hotel", "Resort Hotel (H1)", None)],
        set(),
        hotel_bookings,
        HOTEL_FROM,
        HOTEL_TO,
        "EUR",
    )


def _unused_reader(*_: Any) -> Any:
    raise AssertionError("the occupancy report reads PostgreSQL only")


async def build_via_registry(
    pool: asyncpg.Pool,
    org_id: str,
    d0: date,
    d1: date,
    formats: list[str] | None = None,
    data_filters: dict[str, list[str]] | None = None,
) -> ReportTable:
    req = new_report_request(
        org_id,
        "tester",
        "venue_occupancy",
        d0,
        d1,
        formats or ["csv"],
        data_filters=data_filters or {},
    )
    async with pool.acquire() as conn:
        org = await fetch_organization(conn, org_id)
        venues = await fetch_venues(conn, org_id)
    ctx = ReportContext(req, org, venues, pool, _unused_reader)
    return await registry.get("venue_occupancy").build(ctx)


async def test_hotel_occupancy_equals_the_csv(
    pg_pool: asyncpg.Pool, hotel_loaded: None, hotel_expected: Expected
) -> None:
    table = await build_via_registry(pg_pool, hotel.ORGANIZATION_ID, HOTEL_FROM, HOTEL_TO)
    check_report(table, hotel_expected)
    # facts of this data set, stated so a change in them is seen
    rows = [list(r) for r in table.rows]
    # a stay on every date, but no room counts: occupancy unknown, not 100 %
    assert len(rows) == 52 and all(r[3:5] == [None, "unknown"] for r in rows)
    assert all(r[8:11] == [None, None, None] for r in rows)
    backtest = {
        r[0]: r for r in next(s for s in table.sections if s.name == "forecast_backtest").rows
    }
    assert backtest["all venues"][3:5] == ["2016-09", "2017-08"]
    assert table.validation == (
        "warning: capacity unknown for 2 venue(s) (city-hotel, resort-hotel); their slots, "
        "occupancy and RevPAS are not computed (register a capacity: wedding-engine venue ORG"
        " VENUE --capacity N)",
    )
    kpis = {k.label: k.value for k in table.kpis}
    assert kpis["Occupancy, all venues"] == "n/a"
    recs = next(s for s in table.sections if s.name == "recommendations")
    r4 = {r[1]: r[4] for r in recs.rows if r[0] == "R4"}
    assert r4 == {
        "city-hotel": "cancellation rate 41.73% (33102 of 79330 bookings)",
        "resort-hotel": "cancellation rate 27.76% (11122 of 40059 bookings)",
    }


async def test_hotel_partial_range(
    pg_pool: asyncpg.Pool, hotel_loaded: None, hotel_bookings: list[B]
) -> None:
    d0, d1 = date(2016, 2, 10), date(2017, 3, 20)
    exp = Expected(
        [("city-hotel", "City Hotel (H2)", None), ("resort-hotel", "Resort Hotel (H1)", None)],
        set(),
        hotel_bookings,
        d0,
        d1,
        "EUR",
    )
    table = await build_via_registry(pg_pool, hotel.ORGANIZATION_ID, d0, d1)
    check_report(table, exp)
    # history ends with the last whole month (February 2017): 20 months, no back-test
    backtest = next(s for s in table.sections if s.name == "forecast_backtest")
    assert [r[9] for r in backtest.rows][:2] == [
        "no back-test: 20 months of history, 24 needed"
    ] * 2


def _excel_matches(got: Any, want: Any, column: Column) -> bool:
    if want is None:
        return got is None
    if column.type == "int":
        return type(got) is int and got == want
    if column.type in ("money", "decimal"):
        return Decimal(repr(float(got))) == Decimal(want)
    if column.type == "percent":
        return Decimal(repr(float(got))) * 100 == Decimal(want)
    if column.type == "month":
        return bool(got.date() == date.fromisoformat(f"{want}-01"))
    return bool(got == want)


def _materialised(table: ReportTable) -> ReportTable:
    """The same table with its rows (and its sections' rows) as lists, for several reads."""
    sections = tuple(replace(s, rows=[list(r) for r in s.rows]) for s in table.sections)
    return replace(table, rows=[list(r) for r in table.rows], sections=sections)


async def test_hotel_report_in_every_format(
    pg_pool: asyncpg.Pool, hotel_loaded: None, hotel_expected: Expected, tmp_path: Path
) -> None:
    table = _materialised(
        await build_via_registry(pg_pool, hotel.ORGANIZATION_ID, HOTEL_FROM, HOTEL_TO)
    )
    assert len(table.kpis) == 9 and len(table.validation) == 1
    check_formats(tmp_path, table, hotel_expected)


def check_formats(tmp_path: Path, table: ReportTable, expected: Expected) -> None:
    """Render ``table`` in the five formats; every block, key figure and finding of each file
    equals the table, and the table equals ``expected`` (the independent computation)."""
    check_report(table, expected)
    # (name, title, columns, rows): the main table's rows are the independent ones
    blocks: list[tuple[str, str, Sequence[Column], list[list[Any]]]] = [
        ("data", "Data", occupancy.COLUMNS, expected.main_rows()),
        *((s.name, s.title, s.columns, [list(r) for r in s.rows]) for s in table.sections),
    ]
    assert [b[0] for b in blocks] == [
        "data", "occupancy_by_weekday", "revpad_by_month", "revpad_by_venue",
        "recommendations", "demand_forecast", "forecast_backtest",
    ]  # fmt: skip
    kpis = [(k.label, k.value) for k in table.kpis]

    # CSV: blocks separated by an empty line; a section block starts with "# <title>"
    raw = render_path(tmp_path, "csv", table).read_bytes()
    parsed = csv_blocks(raw)
    assert len(parsed) == len(blocks) + 1  # + validation
    for i, ((_, title, columns, rows), got) in enumerate(zip(blocks, parsed, strict=False)):
        header = got if i == 0 else got[1:]
        if i:
            assert got[0] == [f"# {title}"]
        assert header[0] == [c.name for c in columns]
        assert header[1:] == [
            [csv_cell(v, c) for v, c in zip(r, columns, strict=True)] for r in rows
        ], title
    assert parsed[-1] == [["# Validation"], ["finding"], *[[f] for f in table.validation]]

    # JSON
    doc = orjson.loads(render_path(tmp_path, "json", table).read_bytes())
    assert doc["report"]["report_type"] == "venue_occupancy"
    assert doc["rows"] == [
        dict(zip([c.name for c in occupancy.COLUMNS], r, strict=True)) for r in blocks[0][3]
    ]
    assert [s["name"] for s in doc["sections"]] == [b[0] for b in blocks[1:]]
    for (_, _, columns, rows), section in zip(blocks[1:], doc["sections"], strict=True):
        names = [c.name for c in columns]
        assert section["rows"] == [dict(zip(names, r, strict=True)) for r in rows]
    assert doc["kpis"] == [{"label": k, "value": v} for k, v in kpis]
    assert doc["validation"] == list(table.validation)

    # Excel: a sheet per block, typed cells; key figures and findings on the metadata sheet
    wb = openpyxl.load_workbook(render_path(tmp_path, "excel", table))
    assert wb.sheetnames == [
        "data", *(["chart"] if expected.known else []), "occupancy_by_weekday",
        "revpad_by_month", "revpad_by_month chart", "revpad_by_venue", "recommendations",
        "demand_forecast", "demand_forecast chart", "forecast_backtest", "metadata",
    ]  # fmt: skip
    for name, _, columns, rows in blocks:
        got = [list(r) for r in wb[name].iter_rows(min_row=2, values_only=True)]
        assert len(got) == len(rows), name
        for g, e in zip(got, rows, strict=True):
            for gv, ev, c in zip(g, e, columns, strict=True):
                assert _excel_matches(gv, ev, c), (name, c.name, gv, ev)
    main = blocks[0][3]
    if expected.known:  # the chart sums the slots of the venues with a stated capacity
        chart = list(wb["chart"].iter_rows(values_only=True))
        assert chart[0] == ("month", "occupied_slots", "available_slots")
        for month_row in chart[1:]:
            rows_m = [r for r in main if r[2] == month_row[0] and r[8] is not None]
            assert month_row[1:] == (sum(r[9] for r in rows_m), sum(r[8] for r in rows_m))
    else:  # no slot is known: no chart
        assert "chart" not in wb.sheetnames
    meta = list(wb["metadata"].iter_rows(values_only=True))
    first = {r[0]: r for r in meta if r[0] is not None}
    start = meta.index(first["key figures"])
    assert [(r[1], r[2]) for r in meta[start : start + len(kpis)]] == kpis
    start = meta.index(first["validation"])
    assert [r[1] for r in meta[start : start + len(table.validation)]] == list(table.validation)

    # PDF: every row of every block as printed, cell after cell, after its title
    text = "".join(
        "".join(p.extract_text().split())
        for p in pypdf.PdfReader(render_path(tmp_path, "pdf", table)).pages
    )
    for label, value in kpis:
        assert "".join((label + value).split()) in text, label
    for finding in table.validation:
        assert "".join(finding.split()) in text, finding
    position = 0
    for name, title, columns, rows in blocks:
        if name != "data":
            position = text.index("".join(title.split()), position)
        for r in rows:
            cells = ["".join(shown(v, c).split()) for v, c in zip(r, columns, strict=True)]
            if name == "recommendations":  # long cells wrap inside their boxes: cell by cell
                assert all(cell in text[position:] for cell in cells), r
            else:
                assert "".join(cells) in text[position:], (name, r)

    # PowerPoint: headline figures, and the table slides of each block
    deck = list(Presentation(str(render_path(tmp_path, "powerpoint", table))).slides)
    titles = [_slide_texts(s)[0] for s in deck]
    boxes = [
        t.split("\n")
        for slide, title in zip(deck, titles, strict=True)
        if title.startswith("Key figures")  # "(1)", "(2)": six figures a slide
        for t in _slide_texts(slide)[1:]
    ]
    assert [(b[1], b[0]) for b in boxes] == kpis
    for _, title, columns, rows in blocks:
        on_slides: list[list[str]] = []
        prefix = "Data: rows " if title == "Data" else f"{title}: rows "
        for slide, slide_title in zip(deck, titles, strict=True):
            if slide_title.startswith(prefix):
                grid = next(sh.table for sh in slide.shapes if sh.has_table)
                on_slides.extend([c.text for c in row.cells] for row in list(grid.rows)[1:])
        want = [[shown(v, c) for v, c in zip(r, columns, strict=True)] for r in rows]
        assert on_slides == want, title


def _slide_texts(slide: Any) -> list[str]:
    return [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]


# -- a hand-built set: capacity > 1, capacity 0, unknown capacity, closures, two currencies ---

HB_FROM, HB_TO = date(2024, 1, 15), date(2024, 6, 20)
HB_VENUES: list[tuple[str, str, int | None]] = [
    ("barn", "The Barn", 1),
    ("garden", "Garden (capacity unknown)", None),
    ("hall", "Great Hall", 2),
    ("newbie", "New Venue", 1),
    ("shed", "Shed (capacity 0)", 0),
]


def hand_built(org_id: str) -> tuple[set[tuple[str, date]], list[B]]:
    rng = random.Random(20241129)
    closed: set[tuple[str, date]] = {
        ("hall", date(2024, 3, 5)),
        ("hall", date(2024, 3, 6)),
        ("hall", date(2024, 2, 29)),
        ("garden", date(2024, 1, 20)),
        ("garden", date(2023, 12, 25)),  # outside the range
        ("shed", date(2024, 6, 20)),
        *{("barn", date(2024, 4, d)) for d in range(1, 8)},  # a closed week
    }
    bookings: list[B] = []
    for venue, first in (("barn", "2022-01"), ("garden", "2022-03"), ("hall", "2022-01"),
                         ("shed", "2022-06"), ("newbie", "2023-11")):  # fmt: skip
        for month in months_between(date.fromisoformat(f"{first}-01"), date(2024, 7, 1)):
            y, m = int(month[:4]), int(month[5:])
            summer = m in (12, 1, 2, 3)  # southern hemisphere wedding season
            for _ in range(
                rng.randint(4, 9) + (12 if summer else 0) + (8 if venue == "hall" else 0)
            ):
                day = date(y, m, rng.randint(1, 28))
                cancel_weight = 4 if venue == "barn" else 2  # the barn's terms are loose
                status = rng.choice(
                    ["booked"] * 5 + ["completed"] * 2 + ["cancelled"] * cancel_weight + ["no_show"]
                )
                currency = "JPY" if venue == "hall" and rng.random() < 0.2 else "NZD"
                amount = rng.randint(0, 900_000) if currency == "NZD" else rng.randint(0, 9_000_000)
                bookings.append(
                    B(venue, day, rng.choice([0, 0, 0, 1, 2, 3, 7]), status, amount, currency)
                )
    bookings += [
        B("hall", date(2024, 1, 12), 5, "booked", 100_003, "NZD"),  # starts before the range
        B("hall", date(2024, 3, 5), 0, "booked", 50_000, "NZD"),  # on a closed date
        *[B("barn", date(2024, 2, 10), 0, "completed", 7, "NZD") for _ in range(3)],  # over cap
        B("hall", date(2024, 6, 19), 4, "booked", 4_001, "NZD"),  # runs past the range
        # the new venue is booked on every date of May 2024
        *[B("newbie", date(2024, 5, d), 0, "booked", 250_000, "NZD") for d in range(1, 32)],
        B(None, date(2024, 2, 1), 0, "booked", 1, "NZD"),  # no venue
        B("ghost", date(2024, 2, 2), 0, "booked", 1, "NZD"),  # a venue that does not exist
        B("ghost", date(2023, 2, 2), 0, "booked", 1, "NZD"),  # ... outside the range
    ]
    return closed, bookings


@pytest_asyncio.fixture(scope="module")
async def hb_org(
    pg_pool: asyncpg.Pool,
) -> AsyncIterator[tuple[str, Expected, set[tuple[str, date]]]]:
    org_id = f"occ-{uuid.uuid4().hex[:10]}"
    closed, bookings = hand_built(org_id)
    booked_at = datetime(2021, 6, 1, tzinfo=UTC)
    async with pg_pool.acquire() as conn:
        await upsert_organization(
            conn, Organization(org_id, "Occupancy Test Co", "Pacific/Auckland", "NZD")
        )
        for v, name, capacity in HB_VENUES:
            await upsert_venue(conn, org_id, Venue(v, name, capacity))
        await conn.executemany(
            "INSERT INTO venue_closures (organization_id, venue_id, closed_on, reason)"
            " VALUES ($1, $2, $3, 'test')",
            [(org_id, v, d) for v, d in sorted(closed)],
        )
        await copy_bookings(
            conn,
            [
                BookingRow(
                    organization_id=org_id,
                    id=f"b{i}",
                    booked_at=booked_at,
                    cancelled_at=booked_at if b.status == "cancelled" else None,
                    source_event_id=None,
                    **asdict(b),  # venue, service date, nights, status, amount, currency
                )
                for i, b in enumerate(bookings)
            ],
        )
    exp = Expected(HB_VENUES, closed, bookings, HB_FROM, HB_TO, "NZD")
    yield org_id, exp, closed


async def test_hand_built_set(
    pg_pool: asyncpg.Pool, hb_org: tuple[str, Expected, set[tuple[str, date]]]
) -> None:
    org_id, exp, _ = hb_org
    table = await build_via_registry(pg_pool, org_id, HB_FROM, HB_TO)
    check_report(table, exp)
    rows = {(r[0], r[2]): r for r in table.rows}
    # hand-checked shape: the range cuts January (17 dates) and June (20 dates)
    assert rows[("hall", "2024-01")][5] == 17 and rows[("hall", "2024-06")][5] == 20
    assert rows[("hall", "2024-03")][6] == 2 and rows[("hall", "2024-02")][6] == 1
    assert rows[("barn", "2024-04")][6:9] == [7, 23, 23]
    assert rows[("shed", "2024-03")][8] == 0 and rows[("shed", "2024-03")][10] is None
    assert rows[("garden", "2024-01")][3:5] == [None, "unknown"]
    assert rows[("garden", "2024-01")][8:11] == [None, None, None]
    assert rows[("hall", "2024-02")][8] == 28 * 2  # 29 dates, one closed, capacity 2
    backtest = {
        r[0]: r for r in next(s for s in table.sections if s.name == "forecast_backtest").rows
    }
    assert backtest["newbie"][9] == "no forecast: 7 months of history, 12 needed"
    # every rule fires at least once on this set, so each is exercised
    assert {r[0] for r in exp.recommendations()} >= {"R1", "R2", "R3", "R4", "R5"}
    v = table.validation
    assert any(line.startswith("warning: capacity unknown for 1 venue(s) (garden)") for line in v)
    assert f"warning: {exp.closed_units} booking-date(s)" in "\n".join(v) and exp.closed_units > 0
    assert f"warning: {exp.unassigned} booking(s) in the range have no venue" in v
    assert f"error: {exp.orphans} booking(s) in the range name a venue that does not exist" in v
    over_barn = sum(1 for d in exp.open["barn"] if exp.units[("barn", d)] > 1)
    assert any(line.startswith(f"warning: barn: {over_barn} available date(s)") for line in v)
    assert "info: hall: revenue in 2 currencies (JPY, NZD), shown separately" in v
    # R5 compares the hall's months in NZD, the organisation's currency, only: its few JPY
    # bookings made months without one "off-season" in JPY (a trial user's finding)
    recs = next(s for s in table.sections if s.name == "recommendations").rows
    r5 = [r for r in recs if r[0] == "R5"]
    assert r5 and all(str(r[4]).startswith("RevPAD NZD ") for r in r5), r5
    assert len({(r[1], r[3]) for r in r5}) == len(r5)  # one per venue and month


def test_r5_main_currency() -> None:
    from stream_app.reports.types.occupancy import main_currency

    months = {"2025-04": {"USD": 9}, "2025-05": {"USD": 5, "CAD": 3}, "2025-06": {"USD": 1}}
    assert main_currency({"USD": 15, "CAD": 3}, months, "USD") == "USD"
    # the organisation's currency not earned: the one of the most months, not the largest sum
    assert main_currency({"USD": 15, "CAD": 3}, months, "GBP") == "USD"
    assert (
        main_currency(
            {"JPY": 9_000_000, "USD": 15}, {"a": {"USD": 1}, "b": {"USD": 2, "JPY": 9}}, "GBP"
        )
        == "USD"
    )
    assert main_currency({"CAD": 1, "AUD": 1}, {"a": {"CAD": 1}, "b": {"AUD": 1}}, "GBP") == "AUD"
    assert main_currency({"USD": 0, "CAD": -5}, months, "USD") is None


async def test_hand_built_report_in_every_format(
    pg_pool: asyncpg.Pool, hb_org: tuple[str, Expected, set[tuple[str, date]]], tmp_path: Path
) -> None:
    org_id, exp, _ = hb_org
    table = _materialised(await build_via_registry(pg_pool, org_id, HB_FROM, HB_TO))
    # two currencies: revenue and RevPAD key figures for each
    assert {k.label for k in table.kpis} >= {"RevPAD, all venues (JPY)", "RevPAD, all venues (NZD)"}
    check_formats(tmp_path, table, exp)


async def test_venue_filter_and_errors(
    pg_pool: asyncpg.Pool, hb_org: tuple[str, Expected, set[tuple[str, date]]]
) -> None:
    org_id, _, closed = hb_org
    table = await build_via_registry(
        pg_pool, org_id, HB_FROM, HB_TO, data_filters={"venue_id": ["hall"]}
    )
    assert {r[0] for r in table.rows} == {"hall"}
    _, bookings = hand_built(org_id)
    exp = Expected(
        [v for v in HB_VENUES if v[0] == "hall"], closed, bookings, HB_FROM, HB_TO, "NZD"
    )
    check_report(table, exp)
    with pytest.raises(
        ReportInputError, match=r"data_filters.venue_id: unknown venue\(s\) \['nope'\]"
    ):
        await build_via_registry(
            pg_pool, org_id, HB_FROM, HB_TO, data_filters={"venue_id": ["nope"]}
        )


async def test_reads_only_its_own_tenant(
    pg_pool: asyncpg.Pool, hb_org: tuple[str, Expected, set[tuple[str, date]]], hotel_loaded: None
) -> None:
    org_id, _, _ = hb_org
    # asking for another tenant's venue under this tenant finds nothing (RLS + predicates)
    async with pg_pool.acquire() as conn:
        data = await occupancy.read_data(conn, org_id, ["city-hotel"], HOTEL_FROM, HOTEL_TO)
        async with tenant_transaction(conn, org_id):
            seen = await conn.fetchval("SELECT count(*) FROM bookings")
    assert data.by_venue == {} and data.monthly_bookings == {}
    assert seen == len(hand_built(org_id)[1])


def test_registered() -> None:
    assert "venue_occupancy" in REPORT_TYPES
    rt = registry.get("venue_occupancy")
    assert rt.cache_class == "operational" and rt.title == "Venue occupancy"
    assert CACHE_TTL_S[rt.cache_class] == 3600


def test_seasonal_naive_by_hand() -> None:
    history = list(range(1, 27))  # 26 months: 1..26
    assert occupancy.seasonal_naive(history, 14) == [*range(15, 27), 15, 16]
    errors = occupancy.backtest(history)  # hold-out 15..26 forecast by 3..14: error 12 each
    assert errors.abs_errors == (12,) * 12
    mae, mape, n, n_pct = occupancy.mae_mape([errors])
    # MAPE = mean(12/a for a in 15..26) × 100, worked out with Fractions here
    assert mae == "12.00" and n == 12 and n_pct == 12
    assert mape == fixed2(sum((Fraction(12, a) for a in range(15, 27)), Fraction(0)) * 100 / 12)
    with pytest.raises(ValueError, match="history: 11 months; seasonal naive needs 12"):
        occupancy.seasonal_naive([1] * 11, 1)


NO_HISTORY = "warning: no bookings in the organisation's PostgreSQL history for this range"


async def test_a_range_without_history_says_so(
    pg_pool: asyncpg.Pool, hb_org: tuple[str, Expected, set[tuple[str, date]]]
) -> None:
    """A trial user's finding: a tenant fed only through Kafka read a report of zeros with
    recommendations and nothing saying its PostgreSQL history was empty."""
    org_id, _, _ = hb_org
    empty = await build_via_registry(pg_pool, org_id, date(2090, 1, 1), date(2090, 3, 31))
    assert [v for v in empty.validation if v.startswith(NO_HISTORY)] != []
    full = await build_via_registry(pg_pool, org_id, HB_FROM, HB_TO)
    assert [v for v in full.validation if v.startswith(NO_HISTORY)] == []


async def test_the_shared_history_checks_run_on_the_whole_organisation_only(
    pg_pool: asyncpg.Pool,
) -> None:
    """A trial user's venue company: bookings in ``usd``, one of USD 5,000,000 and a
    cancellation without a date passed unremarked (the shared checks ran on the photography,
    catering and planner reports only). Filtered to a venue (what a venue-scoped token can
    ask) the organisation-wide checks are not run: they would name other venues' bookings."""
    org_id = f"occ-{uuid.uuid4().hex[:10]}"
    booked_at = datetime(2025, 1, 2, tzinfo=UTC)
    rows = [  # (id, venue, currency, amount, status, cancelled_at)
        ("ok1", "barn", "USD", 500_000, "booked", None),
        ("ok2", "barn", "USD", 500_000, "booked", None),  # equal to ok1 but the id: a block
        ("low", "barn", "usd", 10_000, "booked", None),
        ("big", "lodge", "USD", 500_000_000, "booked", None),
        ("cx", "lodge", "USD", 20_000, "cancelled", None),
    ]
    async with pg_pool.acquire() as conn:
        await upsert_organization(conn, Organization(org_id, "Venues", "America/New_York", "USD"))
        for v in ("barn", "lodge"):
            await upsert_venue(conn, org_id, Venue(v, v, 1))
        await copy_bookings(
            conn,
            [
                BookingRow(
                    organization_id=org_id, id=i, booked_at=booked_at, cancelled_at=c,
                    source_event_id=None, venue_id=v, service_date=date(2025, 5, 10),
                    nights=0, status=s, amount_minor=a, currency=cur,
                )
                for i, v, cur, a, s, c in rows
            ],
        )  # fmt: skip
    table = await build_via_registry(pg_pool, org_id, date(2025, 5, 1), date(2025, 5, 31))
    shared = [v for v in table.validation if v.split(": ", 2)[1].startswith("bookings.")]
    assert shared == [
        "error: bookings.currency: 1 rows whose currency is not an ISO 4217 code (e.g. low)",
        "error: bookings.cancelled_at: 1 cancelled bookings without cancelled_at (e.g. cx)",
        "warning: bookings.amount_minor: 1 bookings above 1,000,000 major units of their"
        " currency (e.g. big)",
    ]
    barn = await build_via_registry(
        pg_pool, org_id, date(2025, 5, 1), date(2025, 5, 31), data_filters={"venue_id": ["barn"]}
    )
    assert [v for v in barn.validation if ": bookings." in v] == []
