"""Report type ``photography_business``: the monthly business report of a photography chain.

Reads PostgreSQL history only (``bookings``, ``suppliers``, ``feedback``), inside a tenant
transaction with the organisation in every predicate; figures are aggregated in SQL.

Definitions:

- a **photographer** is a ``suppliers`` row of kind ``photographer``; a **booking** is a
  ``bookings`` row whose ``supplier_id`` is a photographer, counted in the calendar month of
  its service date (the wedding date, a local date in the organisation's IANA zone) when that
  date is inside the request's range; cancelled bookings are included in ``bookings``;
- **cancellations**: those bookings with status ``cancelled``; cancellation rate =
  cancellations ÷ bookings × 100;
- **revenue**: the contracted amount of the bookings that are not cancelled (``booked``,
  ``completed`` and ``no_show``: the client pays for a no-show), exact in minor units, per
  currency (currencies are never added together). Cash received (payments) is not revenue
  here;
- a **wedding** (trend sections) is a booking that is not cancelled;
- **satisfaction** of a photographer: the ``feedback`` rows of their bookings in the range
  (by the booking's service date): ratings = answers with a 1–5 rating; average rating =
  sum ÷ count, 2 decimals half-even; distribution = count per star; NPS (Net Promoter Score,
  F. Reichheld, Bain & Company, "The One Number You Need to Grow", HBR 2003) = % promoters
  (answers 9–10) − % detractors (0–6) of the NPS answers, 2 decimals half-even, from −100
  to 100; photographers with bookings in the range and no feedback have empty averages;
- **seasonal trends**: weddings per calendar month and per weekday of the range ("this
  period") next to the same dates one year earlier ("last period", 29 February → 28
  February); the weekday is that of the local wedding date (organisation zone); change =
  (this − last) ÷ last × 100 (empty when last is 0).

Rows: one per photographer, month and currency with at least one booking, by photographer id,
month, currency. A photographer-month without bookings has no row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from stream_app.db.tenancy import Organization
from stream_app.reports.model import Cell, ChartSpec, Column, Kpi, ReportSection, ReportTable
from stream_app.reports.types.base import ReportInputError, new_table
from stream_app.reports.types.columns import (
    CANCELLATION_RATE,
    CANCELLATIONS,
    REVENUE_CURRENCY,
    REVENUE_MINOR,
)
from stream_app.reports.types.figures import (
    WEEKDAYS,
    growth,
    mean_text,
    money,
    money_grouped,
    month_earlier_label,
    months_between,
    percent,
    year_earlier,
)
from stream_app.reports.types.history import history_type

REPORT_TYPE = "photography_business"

PHOTOGRAPHER = (
    Column("photographer_id", "text", "photographer (supplier) id"),
    Column("photographer_name", "text", "photographer name"),
)
CHANGE = Column("change", "percent", "(weddings − last year) / last year × 100")

COLUMNS = (
    *PHOTOGRAPHER,
    Column("month", "month", "calendar month of the wedding date (YYYY-MM, organisation zone)"),
    Column("bookings", "int", "bookings with a wedding date in the month, cancelled included"),
    CANCELLATIONS,
    CANCELLATION_RATE,
    REVENUE_CURRENCY,
    Column("revenue", "money", "amount of the bookings not cancelled, major units, exact"),
    REVENUE_MINOR,
)

CHART = ChartSpec(
    title="Revenue by month (all photographers)",
    category_column="month",
    value_columns=("revenue",),
    series_column="currency",
)

SATISFACTION_COLUMNS = (
    *PHOTOGRAPHER,
    Column("ratings", "int", "feedback answers with a 1–5 rating"),
    Column("average_rating", "text", "sum of ratings / ratings, 2 decimals (1–5)"),
    Column("rating_1", "int", "answers rating 1"),
    Column("rating_2", "int", "answers rating 2"),
    Column("rating_3", "int", "answers rating 3"),
    Column("rating_4", "int", "answers rating 4"),
    Column("rating_5", "int", "answers rating 5"),
    Column("nps_answers", "int", "answers with a 0–10 recommendation score"),
    Column("promoters", "int", "answers 9–10"),
    Column("passives", "int", "answers 7–8"),
    Column("detractors", "int", "answers 0–6"),
    Column("nps", "percent", "% promoters − % detractors, in points (−100 to 100)"),
)

MONTH_TREND_COLUMNS = (
    Column("month", "month", "calendar month of this period"),
    Column("weddings", "int", "weddings (bookings not cancelled) in the month, inside the range"),
    Column("last_year_month", "month", "the same month a year earlier"),
    Column("last_year_weddings", "int", "weddings then, inside the range shifted by a year"),
    CHANGE,
)

WEEKDAY_TREND_COLUMNS = (
    Column("iso_weekday", "int", "1 = Monday … 7 = Sunday"),
    Column("weekday", "text", "weekday of the local wedding date"),
    Column("weddings", "int", "weddings of this period on that weekday"),
    Column("share", "percent", "of this period's weddings"),
    Column("last_year_weddings", "int", "weddings of the period a year earlier"),
    Column("last_year_share", "percent", "of last period's weddings"),
    CHANGE,
)

_PHOTOGRAPHER_BOOKINGS = """
    FROM bookings b
    JOIN suppliers s ON s.organization_id = b.organization_id AND s.id = b.supplier_id
    WHERE b.organization_id = $1 AND s.organization_id = $1 AND s.kind = 'photographer'
"""

MAIN_SQL = f"""
    SELECT b.supplier_id, s.name, to_char(b.service_date, 'YYYY-MM') AS month, b.currency,
           count(*) AS bookings,
           count(*) FILTER (WHERE b.status = 'cancelled') AS cancellations,
           coalesce(sum(b.amount_minor) FILTER (WHERE b.status <> 'cancelled'), 0)::bigint
               AS revenue
    {_PHOTOGRAPHER_BOOKINGS}
      AND b.service_date BETWEEN $2 AND $3
    GROUP BY b.supplier_id, s.name, month, b.currency
    ORDER BY b.supplier_id, month, b.currency
"""

SATISFACTION_SQL = f"""
    WITH booked AS (
        SELECT b.id, b.supplier_id, s.name
        {_PHOTOGRAPHER_BOOKINGS}
          AND b.service_date BETWEEN $2 AND $3
    )
    SELECT k.supplier_id, min(k.name) AS name,
           count(f.rating) AS ratings, coalesce(sum(f.rating), 0)::bigint AS rating_sum,
           count(*) FILTER (WHERE f.rating = 1) AS r1,
           count(*) FILTER (WHERE f.rating = 2) AS r2,
           count(*) FILTER (WHERE f.rating = 3) AS r3,
           count(*) FILTER (WHERE f.rating = 4) AS r4,
           count(*) FILTER (WHERE f.rating = 5) AS r5,
           count(f.nps) AS nps_answers,
           count(*) FILTER (WHERE f.nps >= 9) AS promoters,
           count(*) FILTER (WHERE f.nps BETWEEN 7 AND 8) AS passives,
           count(*) FILTER (WHERE f.nps <= 6) AS detractors
    FROM booked k
    LEFT JOIN feedback f ON f.organization_id = $1 AND f.booking_id = k.id
    GROUP BY k.supplier_id
    ORDER BY k.supplier_id
"""

MONTH_TREND_SQL = f"""
    SELECT to_char(b.service_date, 'YYYY-MM') AS month, count(*) AS weddings
    {_PHOTOGRAPHER_BOOKINGS}
      AND b.status <> 'cancelled' AND b.service_date BETWEEN $2 AND $3
    GROUP BY month
"""

WEEKDAY_TREND_SQL = f"""
    SELECT extract(isodow FROM b.service_date)::int AS dow, count(*) AS weddings
    {_PHOTOGRAPHER_BOOKINGS}
      AND b.status <> 'cancelled' AND b.service_date BETWEEN $2 AND $3
    GROUP BY dow
"""


async def _read(
    conn: asyncpg.Connection, org_id: str, date_from: date, date_to: date
) -> dict[str, Any]:
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM suppliers"
        " WHERE organization_id = $1 AND kind = 'photographer')",
        org_id,
    ):
        raise ReportInputError(
            f"organization_id: {org_id!r} has no photographers (suppliers of kind photographer)"
            " in its PostgreSQL history: this report reads the history only, not the live"
            " supplier-activities; load them as `suppliers` rows of kind 'photographer' (README,"
            " Loading your own history)"
        )
    last_from, last_to = year_earlier(date_from), year_earlier(date_to)
    return {
        "main": await conn.fetch(MAIN_SQL, org_id, date_from, date_to),
        "satisfaction": await conn.fetch(SATISFACTION_SQL, org_id, date_from, date_to),
        "months": await conn.fetch(MONTH_TREND_SQL, org_id, date_from, date_to),
        "months_last": await conn.fetch(MONTH_TREND_SQL, org_id, last_from, last_to),
        "weekdays": await conn.fetch(WEEKDAY_TREND_SQL, org_id, date_from, date_to),
        "weekdays_last": await conn.fetch(WEEKDAY_TREND_SQL, org_id, last_from, last_to),
    }


def build_report(
    data: dict[str, Any], org: Organization, date_from: date, date_to: date
) -> ReportTable:
    """The report from the query results of :func:`_read` (pure; see the module docstring)."""
    time_zone = org.time_zone
    rows: list[list[Cell]] = []
    bookings = cancellations = 0
    revenue: dict[str, int] = defaultdict(int)
    for r in data["main"]:
        currency = r["currency"].strip()
        bookings += r["bookings"]
        cancellations += r["cancellations"]
        revenue[currency] += r["revenue"]
        rows.append(
            [
                r["supplier_id"],
                r["name"],
                r["month"],
                r["bookings"],
                r["cancellations"],
                percent(r["cancellations"], r["bookings"]),
                currency,
                money(r["revenue"], currency),
                r["revenue"],
            ]
        )

    satisfaction: list[list[Cell]] = []
    ratings = rating_sum = nps_answers = promoters = detractors = 0
    for r in data["satisfaction"]:
        ratings += r["ratings"]
        rating_sum += r["rating_sum"]
        nps_answers += r["nps_answers"]
        promoters += r["promoters"]
        detractors += r["detractors"]
        satisfaction.append(
            [
                r["supplier_id"],
                r["name"],
                r["ratings"],
                mean_text(r["rating_sum"], r["ratings"]),
                r["r1"],
                r["r2"],
                r["r3"],
                r["r4"],
                r["r5"],
                r["nps_answers"],
                r["promoters"],
                r["passives"],
                r["detractors"],
                percent(r["promoters"] - r["detractors"], r["nps_answers"]),
            ]
        )

    this_months = {r["month"]: r["weddings"] for r in data["months"]}
    last_months = {r["month"]: r["weddings"] for r in data["months_last"]}
    month_rows: list[list[Cell]] = []
    for month in months_between(date_from, date_to):
        earlier = month_earlier_label(month)
        now, then = this_months.get(month, 0), last_months.get(earlier, 0)
        month_rows.append([month, now, earlier, then, growth(now, then)])

    this_days = {r["dow"]: r["weddings"] for r in data["weekdays"]}
    last_days = {r["dow"]: r["weddings"] for r in data["weekdays_last"]}
    this_total, last_total = sum(this_days.values()), sum(last_days.values())
    weekday_rows: list[list[Cell]] = []
    for dow in range(1, 8):
        now, then = this_days.get(dow, 0), last_days.get(dow, 0)
        weekday_rows.append(
            [
                dow,
                WEEKDAYS[dow - 1],
                now,
                percent(now, this_total),
                then,
                percent(then, last_total),
                growth(now, then),
            ]
        )

    kpis = [
        Kpi("Bookings", f"{bookings:,}"),
        Kpi("Cancellations", f"{cancellations:,}"),
        Kpi("Cancellation rate", f"{percent(cancellations, bookings) or '–'}%"),
        *(Kpi(f"Revenue ({c})", money_grouped(v, c)) for c, v in sorted(revenue.items())),
        Kpi("Weddings", f"{this_total:,}"),
        Kpi("Weddings vs a year earlier", f"{growth(this_total, last_total) or '–'}%"),
        Kpi("Average rating", mean_text(rating_sum, ratings) or "–"),
        Kpi("NPS", percent(promoters - detractors, nps_answers) or "–"),
    ]
    return new_table(
        REPORT_TYPE,
        org,
        date_from,
        date_to,
        columns=COLUMNS,
        rows=rows,
        notes=(
            f"Months and weekdays are those of the local wedding date (time zone {time_zone}).",
            "Revenue = amount of the bookings not cancelled, exact, per currency; "
            "currencies are never added together.",
            "NPS = % promoters (9–10) − % detractors (0–6), Bain & Company.",
        ),
        chart=CHART,
        sections=(
            ReportSection(
                name="satisfaction",
                title="Satisfaction by photographer",
                columns=SATISFACTION_COLUMNS,
                rows=satisfaction,
                notes=("Feedback on the bookings of the range (by wedding date).",),
            ),
            _trend_section("month", MONTH_TREND_COLUMNS, month_rows),
            _trend_section("weekday", WEEKDAY_TREND_COLUMNS, weekday_rows),
        ),
        kpis=kpis,
    )


def _trend_section(by: str, columns: Sequence[Column], rows: list[list[Cell]]) -> ReportSection:
    """The section of weddings by ``by`` (``month`` or ``weekday``, also the category
    column), this period against a year earlier, with its chart."""
    return ReportSection(
        name=f"trend_by_{by}",
        title=f"Weddings by {by}: this period against a year earlier",
        columns=columns,
        rows=rows,
        chart=ChartSpec(
            title=f"Weddings by {by}",
            category_column=by,
            value_columns=("weddings", "last_year_weddings"),
        ),
    )


REPORT = history_type(
    REPORT_TYPE,
    title="Photography business report",
    cache_class="financial",
    read=_read,
    make=build_report,
    validated=("bookings", "payments", "feedback"),
)
"""The type. Its builder refuses (:class:`~stream_app.reports.types.base.ReportInputError`)
data filters and a request where the organisation has no
photographers."""
