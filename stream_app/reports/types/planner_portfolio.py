"""Report type ``planner_portfolio``: a wedding planner's offices side by side.

Reads PostgreSQL history only (``offices``, ``bookings.office_id``) inside a tenant
transaction with the organisation in every predicate; counts and sums are aggregated in SQL.

Definitions:

- a **booking** of an office is a ``bookings`` row with that ``office_id`` whose service date
  (the wedding date, a local date in the organisation's IANA zone) is inside the range;
  cancelled bookings are included in ``bookings``;
- a **wedding** is a booking that is not cancelled; **cancellation rate** = cancellations ÷
  bookings × 100;
- **revenue**: the amount of the weddings (bookings not cancelled), exact minor units, per
  currency (never added across currencies); **average booking value** = revenue ÷ weddings,
  rounded half-even to the minor unit;
- **year-over-year growth**: against the same dates one year earlier (29 February → 28
  February): (this − prior) ÷ prior × 100, for weddings and for revenue; empty when the
  prior figure is 0;
- **benchmark**: the organisation's mean per office = the organisation's total ÷ the number
  of its offices (every office in ``offices``, those without bookings included);
  ``revenue_index`` = office revenue ÷ mean revenue per office × 100 (100 = average);
  ``cancellation_vs_org`` = office cancellation rate − the organisation's rate, in
  percentage points (both rounded to 2 decimals first).

Rows: one per office and currency (an office without bookings in the range or the year
before has one row in the organisation's currency with zeros), by office id and currency.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from stream_app.db.tenancy import Organization
from stream_app.reports.model import Cell, ChartSpec, Column, Kpi, ReportSection, ReportTable
from stream_app.reports.types.base import ReportInputError, new_table
from stream_app.reports.types.columns import CURRENCY
from stream_app.reports.types.figures import (
    growth,
    mean_text,
    money,
    money_grouped,
    percent,
    round_minor,
    year_earlier,
)
from stream_app.reports.types.history import history_type

REPORT_TYPE = "planner_portfolio"

CANCELLATION_RATE = Column("cancellation_rate", "percent", "cancelled / bookings × 100")
AVERAGE_BOOKING_VALUE = Column(
    "average_booking_value", "money", "revenue / weddings, rounded half-even"
)
REVENUE_GROWTH = Column("revenue_growth", "percent", "(revenue − prior) / prior × 100")

COLUMNS = (
    Column("office_id", "text", "office id"),
    Column("office_name", "text", "office name"),
    Column("city", "text", "city"),
    CURRENCY,
    Column("bookings", "int", "bookings with a wedding date in the range, cancelled included"),
    Column("weddings", "int", "bookings not cancelled"),
    CANCELLATION_RATE,
    Column("revenue", "money", "amount of the weddings, exact"),
    AVERAGE_BOOKING_VALUE,
    Column("prior_weddings", "int", "weddings of the same dates a year earlier"),
    Column("prior_revenue", "money", "revenue of the same dates a year earlier"),
    Column("weddings_growth", "percent", "(weddings − prior) / prior × 100"),
    REVENUE_GROWTH,
    Column("revenue_index", "decimal", "revenue / organisation mean per office × 100 (100 = mean)"),
    Column(
        "cancellation_vs_org", "decimal", "cancellation rate − organisation rate, percentage points"
    ),
)

CHART = ChartSpec(
    title="Revenue by office, this period and a year earlier",
    category_column="office_name",
    value_columns=("revenue", "prior_revenue"),
    series_column="currency",
)

BENCHMARK_COLUMNS = (
    Column("currency", "text", "ISO 4217 code"),
    Column("offices", "int", "offices of the organisation"),
    Column("bookings", "int", "bookings, all offices"),
    Column("weddings", "int", "weddings, all offices"),
    CANCELLATION_RATE,
    Column("revenue", "money", "revenue, all offices"),
    Column("mean_revenue_per_office", "money", "revenue / offices, rounded half-even"),
    Column("mean_weddings_per_office", "decimal", "weddings / offices, 2 decimals"),
    AVERAGE_BOOKING_VALUE,
    Column("prior_revenue", "money", "revenue a year earlier"),
    REVENUE_GROWTH,
)

OFFICES_SQL = "SELECT id, name, city FROM offices WHERE organization_id = $1 ORDER BY id"

FIGURES_SQL = """
    SELECT b.office_id, b.currency,
           count(*) FILTER (WHERE b.service_date BETWEEN $2 AND $3) AS bookings,
           count(*) FILTER (WHERE b.service_date BETWEEN $2 AND $3
                            AND b.status = 'cancelled') AS cancellations,
           coalesce(sum(b.amount_minor) FILTER (WHERE b.service_date BETWEEN $2 AND $3
                                                AND b.status <> 'cancelled'), 0)::bigint
               AS revenue,
           count(*) FILTER (WHERE b.service_date BETWEEN $4 AND $5
                            AND b.status <> 'cancelled') AS prior_weddings,
           coalesce(sum(b.amount_minor) FILTER (WHERE b.service_date BETWEEN $4 AND $5
                                                AND b.status <> 'cancelled'), 0)::bigint
               AS prior_revenue
    FROM bookings b
    JOIN offices o ON o.organization_id = b.organization_id AND o.id = b.office_id
    WHERE b.organization_id = $1 AND o.organization_id = $1
      AND (b.service_date BETWEEN $2 AND $3 OR b.service_date BETWEEN $4 AND $5)
    GROUP BY b.office_id, b.currency
"""


UNASSIGNED_SQL = """
    SELECT b.currency, count(*) AS bookings,
           coalesce(sum(b.amount_minor) FILTER (WHERE b.status <> 'cancelled'), 0)::bigint
               AS revenue,
           (array_agg(b.id ORDER BY b.id))[1:5] AS examples
    FROM bookings b
    WHERE b.organization_id = $1 AND b.service_date BETWEEN $2 AND $3
      AND (b.office_id IS NULL OR NOT EXISTS (
          SELECT 1 FROM offices o WHERE o.organization_id = $1 AND o.id = b.office_id))
    GROUP BY b.currency ORDER BY b.currency
"""
"""Bookings of the range the office figures leave out: no office, or one not registered."""


async def _read(
    conn: asyncpg.Connection, org_id: str, date_from: date, date_to: date
) -> dict[str, Any]:
    return {
        "unassigned": await conn.fetch(UNASSIGNED_SQL, org_id, date_from, date_to),
        "offices": await conn.fetch(OFFICES_SQL, org_id),
        "figures": await conn.fetch(
            FIGURES_SQL, org_id, date_from, date_to, year_earlier(date_from), year_earlier(date_to)
        ),
    }


def _minus(a: str | None, b: str | None) -> str | None:
    return None if a is None or b is None else str(Decimal(a) - Decimal(b))


def build_report(
    data: dict[str, Any], org: Organization, date_from: date, date_to: date
) -> ReportTable:
    """The report from the query results of :func:`_read` (pure; see the module docstring).

    Raises:
        ReportInputError: the organisation has no offices.
    """
    offices = data["offices"]
    if not offices:
        raise ReportInputError(
            f"organization_id: {org.id!r} has no offices in its PostgreSQL history: load them as"
            " `offices` rows and name them in `bookings.office_id` (README, Loading your own"
            " history)"
        )
    by_office: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in data["figures"]:
        by_office[r["office_id"]][r["currency"].strip()] = r
    # organisation totals per currency: bookings, cancellations, revenue, prior revenue
    org_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for per_currency in by_office.values():
        for cur, r in per_currency.items():
            t = org_totals[cur]
            t[0] += r["bookings"]
            t[1] += r["cancellations"]
            t[2] += r["revenue"]
            t[3] += r["prior_revenue"]
    n = len(offices)
    org_rate = {cur: percent(t[1], t[0]) for cur, t in org_totals.items()}
    mean_revenue = {cur: Decimal(t[2]) / n for cur, t in org_totals.items()}

    rows: list[list[Cell]] = []
    for office in offices:
        figures = by_office.get(office["id"]) or {org.currency: None}
        for cur in sorted(figures):
            r = figures[cur]
            bookings = r["bookings"] if r else 0
            cancellations = r["cancellations"] if r else 0
            revenue = r["revenue"] if r else 0
            prior_weddings = r["prior_weddings"] if r else 0
            prior_revenue = r["prior_revenue"] if r else 0
            weddings = bookings - cancellations
            rate = percent(cancellations, bookings)
            rows.append(
                [
                    office["id"],
                    office["name"],
                    office["city"],
                    cur,
                    bookings,
                    weddings,
                    rate,
                    money(revenue, cur),
                    money(round_minor(Decimal(revenue) / weddings), cur) if weddings else None,
                    prior_weddings,
                    money(prior_revenue, cur),
                    growth(weddings, prior_weddings),
                    growth(revenue, prior_revenue),
                    percent(revenue, mean_revenue.get(cur, Decimal(0))),
                    _minus(rate, org_rate.get(cur)),
                ]
            )

    benchmark: list[list[Cell]] = []
    kpis = [Kpi("Offices", f"{n:,}")]
    for cur, (bookings, cancellations, revenue, prior_revenue) in sorted(org_totals.items()):
        weddings = bookings - cancellations
        benchmark.append(
            [
                cur,
                n,
                bookings,
                weddings,
                org_rate[cur],
                money(revenue, cur),
                money(round_minor(mean_revenue[cur]), cur),
                mean_text(weddings, n),
                money(round_minor(Decimal(revenue) / weddings), cur) if weddings else None,
                money(prior_revenue, cur),
                growth(revenue, prior_revenue),
            ]
        )
        kpis += [
            Kpi(f"Weddings ({cur})", f"{weddings:,}"),
            Kpi(f"Revenue ({cur})", money_grouped(revenue, cur)),
            Kpi(
                f"Mean revenue per office ({cur})",
                money_grouped(round_minor(mean_revenue[cur]), cur),
            ),
            Kpi(f"Revenue growth ({cur})", f"{growth(revenue, prior_revenue) or '–'}%"),
            Kpi(f"Cancellation rate ({cur})", f"{org_rate[cur] or '–'}%"),
        ]
    return new_table(
        REPORT_TYPE,
        org,
        date_from,
        date_to,
        columns=COLUMNS,
        rows=rows,
        notes=(
            f"Weddings by their local date (time zone {org.time_zone}); growth against the same "
            "dates a year earlier.",
            "Revenue = amount of the bookings not cancelled, exact, per currency.",
            "revenue_index = office revenue / (organisation revenue / offices) × 100.",
        ),
        chart=CHART,
        sections=(
            ReportSection(
                name="benchmark",
                title="Organisation totals and means per office",
                columns=BENCHMARK_COLUMNS,
                rows=benchmark,
            ),
        ),
        kpis=kpis,
        validation=_unassigned(data.get("unassigned", ())),
    )


def _unassigned(rows: Sequence[Any]) -> tuple[str, ...]:
    """A warning for the bookings of the range without an office or with one not registered:
    no office row counts them, so the organisation totals leave them out (a trial user's
    €37,622.64 went missing without a word)."""
    if not rows:
        return ()
    count = sum(int(r["bookings"]) for r in rows)
    amounts = ", ".join(
        f"{r['currency'].strip()} {money(int(r['revenue']), r['currency'].strip())}" for r in rows
    )
    examples = sorted({e for r in rows for e in r["examples"]})[:5]
    return (
        f"warning: {count} booking(s) in the range have no office or one not registered in"
        f" offices, left out of every figure (revenue not cancelled: {amounts}; e.g."
        f" {', '.join(examples)})",
    )


REPORT = history_type(
    REPORT_TYPE,
    title="Planner portfolio",
    cache_class="portfolio",
    read=_read,
    make=build_report,
    validated=("bookings", "payments"),
)
"""The type. Its builder refuses (:class:`~stream_app.reports.types.base.ReportInputError`)
data filters and a request where the organisation has no offices."""
