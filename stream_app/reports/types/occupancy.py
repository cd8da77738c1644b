"""Report type ``venue_occupancy``: occupancy, revenue per available date, rules and a forecast.

Part of the report layer: reads PostgreSQL history only (``venues``, ``venue_closures``,
``bookings``; migration 001), always inside :func:`~stream_app.db.tenancy.tenant_transaction`
with the organisation named in every predicate. It does not read the live tables.

Definitions (dates are local calendar dates of the organisation's IANA zone, as stored in
``bookings.service_date`` and ``venue_closures.closed_on``; a date's weekday is therefore its
weekday in that zone, no conversion from UTC is involved):

- **capacity**: ``venues.capacity``, events (or rooms) a venue can hold on one date. A venue
  whose capacity is unknown (NULL) has **unknown** slots, occupancy and RevPAS (empty cells):
  a hotel with a stay on every date is not "100 % occupied" when its rooms are not counted.
  Its dates, booked units, revenue, RevPAD and demand index are shown; it is left out of the
  organisation's occupancy key figure; the report names every such venue (validation and the
  ``capacity_basis`` column), and the capacity-based recommendation rules (R1, R2) are not
  applied to it. (The hotel demo's venues have NULL capacity: the data set publishes no room
  counts, and none is invented.) The queries count such a venue with capacity 1; those
  slot figures are not shown.
- **available date**: a date of the range on which the venue is not closed
  (``venue_closures``); **available slots** = available dates × capacity.
- **covered dates** of a booking: a stay of ``n ≥ 1`` nights covers ``service_date ..
  service_date + n − 1``; a booking with ``nights = 0`` (a wedding, a day use) covers its
  service date.
- **booked units** of a date: the non-cancelled bookings (status ``booked``, ``completed`` or
  ``no_show``: a no-show held its slot) covering it. **occupied slots** = Σ over available
  dates of min(booked units, capacity); units beyond capacity are counted as overbooked dates
  in the validation findings, never as occupancy above 100 %.
- **occupancy rate** = occupied slots ÷ available slots × 100, half-even to 2 decimals; empty
  when there are no available slots.
- **revenue of a date**: each non-cancelled booking's ``amount_minor`` spread over its covered
  dates in whole minor units (``amount // n`` each, the remainder one unit at a time on the
  first dates, so the shares add up to the amount exactly), counted on available dates in the
  range only. Per currency, never added across currencies.
- **RevPAD** (revenue per available date) = revenue ÷ available dates, and **RevPAS**
  (revenue per available slot) = revenue ÷ available slots, each rounded half-even to the
  currency's minor unit. RevPAS is the venue analogue of the hotel industry's RevPAR, "room
  revenue divided by rooms available" (STR glossary, https://str.com/data-insights/resources/
  glossary; USALI 11th ed.); for a venue of capacity 1 the two are equal.
- **units sold** (per currency) = the booked units of that currency's bookings on available
  dates (each covered date of a booking is one unit, uncapped), and **ADR** (average daily
  rate) = revenue ÷ units sold, rounded half-even to the minor unit: the hotel industry's
  "room revenue divided by rooms sold" (STR glossary, as above), so RevPAS = ADR × occupancy
  for a venue never overbooked.
- **demand index** of a weekday = (booked units ÷ available dates on that weekday) ÷ (booked
  units ÷ available dates over the whole range) × 100: 100 = the venue's average day.
- **cancellation rate** (rule R4) = cancelled ÷ all bookings with a service date in the range.

Recommendations follow from the rules in :data:`RULES`, each with its threshold; every
recommendation names the figure that triggered it.

Demand forecast: bookings (non-cancelled, by month of the service date) per venue for the
:data:`FORECAST_MONTHS` months after the last whole month of the range, by the **seasonal
naive** method (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed.,
§5.2: ŷ(T+h) = y(T+h−12k), k = ⌈h/12⌉). The history is every month from the venue's first
booking up to the last whole month of the range (history before ``date_from`` is used too).
Back-test: the last :data:`HOLDOUT_MONTHS` months of the history are held out and forecast
from the months before them; the report prints MAE (bookings per venue-month) and MAPE
(§5.8; over hold-out months with actual > 0, the count of those is printed) per venue and
pooled over all venue-months. A venue with fewer than 12 months of history gets no forecast,
fewer than 24 no back-test; the report says so.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import asyncpg

from stream_app.db.tenancy import Organization, Venue, tenant_transaction
from stream_app.money import to_major
from stream_app.reports.model import Cell, ChartSpec, Column, Kpi, ReportSection, ReportTable
from stream_app.reports.types.base import (
    ReportContext,
    ReportType,
    new_table,
    selected_venues,
)
from stream_app.reports.types.columns import CURRENCY, REVENUE_MINOR, VENUE, VENUE_NAME
from stream_app.reports.types.figures import WEEKDAYS, money, money_grouped, percent
from stream_app.reports.types.history import with_validation

REPORT_TYPE = "venue_occupancy"

FORECAST_MONTHS = 12
"""Months forecast after the range (N of the issue)."""
HOLDOUT_MONTHS = 12
"""Months held out at the end of the history for the back-test."""
SEASON = 12
"""Season length of the seasonal naive method, months."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A recommendation rule.

    Attributes:
        id: ``R1`` …, printed with each recommendation.
        text: the rule, with its threshold, as printed in the report.
        threshold_pct: the threshold, percent.
    """

    id: str
    text: str
    threshold_pct: Decimal


MIN_WEEKDAY_DATES = 4
"""R1 and R3 look only at weekdays with at least this many available dates in the range."""

R1 = Rule(
    "R1",
    "R1 weekday discount: a weekday with occupancy under 40.00% at a venue with a stated "
    f"capacity (and at least {MIN_WEEKDAY_DATES} available dates of that weekday) → consider a "
    "weekday discount or a midweek package for that weekday.",
    Decimal("40.00"),
)
R2 = Rule(
    "R2",
    "R2 peak pricing: a month with occupancy of 90.00% or more at a venue with a stated "
    "capacity → consider higher rates or a minimum spend in that month.",
    Decimal("90.00"),
)
R3 = Rule(
    "R3",
    "R3 weak weekday demand: a weekday whose demand index (booked units per available date "
    "÷ the venue's average) is under 80.00% (at least "
    f"{MIN_WEEKDAY_DATES} available dates) → consider an offer for that weekday.",
    Decimal("80.00"),
)
R4 = Rule(
    "R4",
    "R4 cancellations: a venue where 25.00% or more of the bookings with a service date in "
    "the range were cancelled → consider a non-refundable deposit or stricter terms.",
    Decimal("25.00"),
)
R5 = Rule(
    "R5",
    "R5 off-season: a month whose RevPAD is under 50.00% of the venue's RevPAD over the "
    "whole range, in the venue's main currency (the organisation's when the venue earned in "
    "it, else the one it earned in during the most months) → consider off-peak packages for "
    "that month.",
    Decimal("50.00"),
)


def main_currency(
    earned: Mapping[str, int], by_month: Mapping[str, Mapping[str, int]], organisation: str
) -> str | None:
    """The currency R5 compares a venue's months in: ``organisation`` when the venue earned
    in it over the range (``earned``: currency → minor units), else the currency with
    revenue in the most months of ``by_month`` (month → currency → minor; ties: the first in
    alphabetical order); None when it earned nothing. A venue's few stays in another
    currency would otherwise make every month without one of them "off-season" in that
    currency (a trial user's three CAD stays among a hundred USD ones gave 9 of 30
    recommendations)."""
    positive = sorted(c for c, minor in earned.items() if minor > 0)
    if not positive:
        return None
    if organisation in positive:
        return organisation
    months = {c: sum(1 for m in by_month.values() if m.get(c, 0) > 0) for c in positive}
    most = max(months.values())
    return min(c for c in positive if months[c] == most)


RULES = (R1, R2, R3, R4, R5)

AVAILABLE_SLOTS = Column("available_slots", "int", "available dates × capacity")
METHOD_COLUMN = Column("method", "text", "forecast method")

COLUMNS = (
    *VENUE,
    Column("month", "month", "calendar month (YYYY-MM, organisation zone)"),
    Column("capacity", "int", "events per date (empty when unknown)"),
    Column(
        "capacity_basis",
        "text",
        "'stated' (venues.capacity) or 'unknown' (slots and occupancy not computed)",
    ),
    Column("dates", "int", "dates of the month inside the range"),
    Column("closed_dates", "int", "of which the venue is closed"),
    Column("available_dates", "int", "dates − closed dates"),
    AVAILABLE_SLOTS,
    Column("occupied_slots", "int", "Σ min(booked units, capacity) over available dates"),
    Column("occupancy_rate", "percent", "occupied ÷ available slots × 100, 2 decimals"),
    Column("booked_units", "int", "non-cancelled bookings covering available dates, uncapped"),
)

CHART = ChartSpec(
    title="Occupied and available slots by month (all venues)",
    category_column="month",
    value_columns=("occupied_slots", "available_slots"),
)

WEEKDAY_COLUMNS = (
    *VENUE,
    Column("weekday_number", "int", "ISO weekday, 1 = Monday … 7 = Sunday"),
    Column("weekday", "text", "weekday name (organisation zone)"),
    Column("available_dates", "int", "available dates on this weekday"),
    AVAILABLE_SLOTS,
    Column("occupied_slots", "int", "Σ min(booked units, capacity)"),
    Column("occupancy_rate", "percent", "occupied ÷ available slots × 100"),
    Column("booked_units", "int", "non-cancelled bookings covering those dates, uncapped"),
    Column("demand_index", "percent", "booked units per available date ÷ venue average × 100"),
)

REVENUE_COLUMNS = (
    *VENUE,
    Column("month", "month", "calendar month (YYYY-MM)"),
    CURRENCY,
    Column("available_dates", "int", "available dates of the venue in the month"),
    AVAILABLE_SLOTS,
    Column("revenue", "money", "revenue of the available dates, major units, exact"),
    REVENUE_MINOR,
    Column("revpad", "money", "revenue ÷ available dates, rounded half-even to minor unit"),
    Column("revpas", "money", "revenue ÷ available slots (RevPAR analogue), rounded"),
    Column("units_sold", "int", "booked units of this currency on the available dates"),
    Column("adr", "money", "average daily rate: revenue ÷ units sold, rounded half-even"),
)

REVENUE_TOTAL_COLUMNS = tuple(c for c in REVENUE_COLUMNS if c.name != "month")

RECOMMENDATION_COLUMNS = (
    Column("rule", "text", "rule id (see the notes)"),
    *VENUE,
    Column("period", "text", "weekday, month or 'range'"),
    Column("figure", "text", "the figure that triggered the rule"),
    Column("threshold", "text", "the rule's threshold"),
    Column("recommendation", "text", "what to consider"),
)

FORECAST_COLUMNS = (
    *VENUE,
    Column("month", "month", "forecast month (YYYY-MM)"),
    Column("forecast_bookings", "int", "non-cancelled bookings with a service date in it"),
    Column("basis_month", "month", "the month whose actual the seasonal naive method repeats"),
    METHOD_COLUMN,
)

BACKTEST_COLUMNS = (
    Column("venue_id", "text", "venue id ('all venues' = pooled)"),
    VENUE_NAME,
    METHOD_COLUMN,
    Column("holdout_from", "month", "first hold-out month"),
    Column("holdout_to", "month", "last hold-out month"),
    Column("holdout_months", "int", "hold-out venue-months"),
    Column("mae", "decimal", "mean absolute error, bookings per venue-month, 2 decimals"),
    Column("mape", "percent", "mean absolute percentage error, months with actual > 0"),
    Column("mape_months", "int", "hold-out venue-months with actual > 0"),
    Column("status", "text", "'ok', or why there is no forecast / back-test"),
)

METHOD = "seasonal naive (FPP3 §5.2)"


# -- figures read from PostgreSQL -------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """Occupancy counts of one venue over a set of dates.

    Attributes:
        available_dates: dates not closed.
        available_slots: available dates × capacity.
        occupied_slots: Σ min(booked units, capacity).
        booked_units: Σ booked units (uncapped).
        overbooked_dates: available dates with more booked units than capacity.
    """

    available_dates: int = 0
    available_slots: int = 0
    occupied_slots: int = 0
    booked_units: int = 0
    overbooked_dates: int = 0


@dataclass(slots=True)
class OccupancyData:
    """What the report reads from PostgreSQL (all keyed by venue id).

    Attributes:
        by_month: ``{venue: {YYYY-MM: Counts}}`` (months without available dates absent).
        by_weekday: ``{venue: {ISO weekday: Counts}}``.
        by_venue: ``{venue: Counts}`` over the whole range.
        revenue_month: ``{venue: {YYYY-MM: {currency: minor}}}``.
        revenue_venue: ``{venue: {currency: minor}}``.
        sold_month / sold_venue: units sold, keyed as the revenue.
        closed: ``{venue: {YYYY-MM: closed dates in the range}}``.
        bookings_in_range / cancelled_in_range: ``{venue: count}`` by service date in range.
        monthly_bookings: ``{venue: {YYYY-MM: non-cancelled bookings}}`` of the history up
            to the last whole month of the range.
        first_month: ``{venue: YYYY-MM}`` of its first booking (any status).
        closed_date_units: non-cancelled booking-dates on closed dates in the range.
        unassigned_bookings: bookings of the organisation in the range without a venue.
        orphan_bookings: bookings in the range naming a venue that does not exist.
    """

    by_month: dict[str, dict[str, Counts]] = field(default_factory=dict)
    by_weekday: dict[str, dict[int, Counts]] = field(default_factory=dict)
    by_venue: dict[str, Counts] = field(default_factory=dict)
    revenue_month: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    revenue_venue: dict[str, dict[str, int]] = field(default_factory=dict)
    sold_month: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    sold_venue: dict[str, dict[str, int]] = field(default_factory=dict)
    closed: dict[str, dict[str, int]] = field(default_factory=dict)
    bookings_in_range: dict[str, int] = field(default_factory=dict)
    cancelled_in_range: dict[str, int] = field(default_factory=dict)
    monthly_bookings: dict[str, dict[str, int]] = field(default_factory=dict)
    first_month: dict[str, str] = field(default_factory=dict)
    closed_date_units: int = 0
    unassigned_bookings: int = 0
    orphan_bookings: int = 0


# v: the venues of the report with their capacity (1 when unknown); open_days: the dates of
# the range on which each is open; nights: every covered date of every non-cancelled booking
# overlapping the range with its share of the amount (whole minor units, the remainder on
# the first dates). $1 organisation, $2 first date, $3 last date, $4 venue ids.
_COMMON_CTES = """
    v AS (
        SELECT id, COALESCE(capacity, 1) AS cap
        FROM venues
        WHERE organization_id = $1 AND id = ANY($4::text[])
    ),
    open_days AS (
        SELECT v.id AS venue_id, v.cap, g.day::date AS day
        FROM v CROSS JOIN generate_series($2::date, $3::date, interval '1 day') AS g(day)
        WHERE NOT EXISTS (
            SELECT 1 FROM venue_closures c
            WHERE c.organization_id = $1 AND c.venue_id = v.id AND c.closed_on = g.day::date
        )
    ),
    nights AS (
        SELECT b.venue_id, b.currency, b.service_date + n.i AS day,
               b.amount_minor / GREATEST(b.nights, 1)
                 + CASE WHEN n.i < b.amount_minor % GREATEST(b.nights, 1) THEN 1 ELSE 0 END
                 AS share
        FROM bookings b
        CROSS JOIN LATERAL generate_series(0, GREATEST(b.nights, 1) - 1) AS n(i)
        WHERE b.organization_id = $1 AND b.venue_id = ANY($4::text[])
          AND b.status <> 'cancelled'
          AND b.service_date <= $3 AND b.service_date + GREATEST(b.nights, 1) - 1 >= $2
    )
"""

OCCUPANCY_SQL = f"""
WITH {_COMMON_CTES},
covered AS (
    SELECT venue_id, day, count(*) AS units FROM nights GROUP BY venue_id, day
),
per_day AS (
    SELECT o.venue_id, o.cap, o.day, COALESCE(c.units, 0) AS units,
           to_char(o.day, 'YYYY-MM') AS month, extract(isodow FROM o.day)::int AS isodow
    FROM open_days o LEFT JOIN covered c ON c.venue_id = o.venue_id AND c.day = o.day
)
SELECT venue_id, month, isodow, GROUPING(month, isodow) AS level,
       count(*)::bigint AS available_dates,
       sum(cap)::bigint AS available_slots,
       sum(LEAST(units, cap))::bigint AS occupied_slots,
       sum(units)::bigint AS booked_units,
       (count(*) FILTER (WHERE units > cap))::bigint AS overbooked_dates
FROM per_day
GROUP BY GROUPING SETS ((venue_id, month), (venue_id, isodow), (venue_id))
"""
"""Occupancy counts per venue and month (level 1), weekday (level 2) and range (level 3)."""

REVENUE_SQL = f"""
WITH {_COMMON_CTES},
per_day AS (
    SELECT venue_id, day, currency, sum(share) AS revenue_minor, count(*) AS units
    FROM nights GROUP BY venue_id, day, currency
)
SELECT p.venue_id, to_char(p.day, 'YYYY-MM') AS month, p.currency,
       GROUPING(to_char(p.day, 'YYYY-MM')) AS level, sum(p.revenue_minor) AS revenue_minor,
       sum(p.units)::bigint AS units_sold
FROM per_day p JOIN open_days o ON o.venue_id = p.venue_id AND o.day = p.day
GROUP BY GROUPING SETS ((p.venue_id, to_char(p.day, 'YYYY-MM'), p.currency),
                        (p.venue_id, p.currency))
"""
"""Revenue (minor units) and units sold of available dates per venue, month and currency
(level 0) and per venue and currency (level 1)."""

CLOSED_SQL = """
SELECT venue_id, to_char(closed_on, 'YYYY-MM') AS month, count(*)::bigint AS closed
FROM venue_closures
WHERE organization_id = $1 AND venue_id = ANY($4::text[]) AND closed_on BETWEEN $2 AND $3
GROUP BY 1, 2
"""

CLOSED_UNITS_SQL = """
SELECT count(*)::bigint
FROM bookings b
CROSS JOIN LATERAL generate_series(0, GREATEST(b.nights, 1) - 1) AS n(i)
JOIN venue_closures c
  ON c.organization_id = b.organization_id AND c.venue_id = b.venue_id
 AND c.closed_on = b.service_date + n.i
WHERE b.organization_id = $1 AND b.venue_id = ANY($4::text[]) AND b.status <> 'cancelled'
  AND c.closed_on BETWEEN $2 AND $3
"""

IN_RANGE_SQL = """
SELECT b.venue_id,
       count(*)::bigint AS bookings,
       (count(*) FILTER (WHERE b.status = 'cancelled'))::bigint AS cancelled,
       (count(*) FILTER (WHERE b.venue_id IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM venues v WHERE v.organization_id = $1 AND v.id = b.venue_id
       )))::bigint AS orphans
FROM bookings b
WHERE b.organization_id = $1 AND b.service_date BETWEEN $2 AND $3
GROUP BY b.venue_id
"""

HISTORY_SQL = """
SELECT venue_id, to_char(service_date, 'YYYY-MM') AS month,
       (count(*) FILTER (WHERE status <> 'cancelled'))::bigint AS held
FROM bookings
WHERE organization_id = $1 AND venue_id = ANY($2::text[]) AND service_date < $3
GROUP BY 1, 2
"""
"""Non-cancelled bookings per venue and service month before ``$3`` (every month with any
booking appears, so the first month of a venue is its first booking's month)."""


async def read_data(
    conn: asyncpg.Connection,
    organization_id: str,
    venue_ids: Sequence[str],
    date_from: date,
    date_to: date,
) -> OccupancyData:
    """Read every figure of the report in one tenant transaction.

    Args:
        conn: a connection (the tenant transaction is opened here).
        organization_id: the tenant.
        venue_ids: the venues reported.
        date_from / date_to: the inclusive local date range.

    Returns:
        The figures, see :class:`OccupancyData`.
    """
    data = OccupancyData()
    ids = list(venue_ids)
    args = (organization_id, date_from, date_to, ids)
    history_end = _history_end(date_to)
    async with tenant_transaction(conn, organization_id):
        # generate_series hides its row count from the planner (it guesses 1,000 rows per
        # booking), so the cost crosses jit_above_cost and JIT compilation took 416 of the
        # 443 ms of the occupancy query on the hotel data; the queries themselves are short.
        await conn.execute("SET LOCAL jit = off")
        for r in await conn.fetch(OCCUPANCY_SQL, *args):
            counts = Counts(
                r["available_dates"],
                r["available_slots"],
                r["occupied_slots"],
                r["booked_units"],
                r["overbooked_dates"],
            )
            venue = r["venue_id"]
            if r["level"] == 1:  # grouped by month (isodow rolled up)
                data.by_month.setdefault(venue, {})[r["month"]] = counts
            elif r["level"] == 2:
                data.by_weekday.setdefault(venue, {})[r["isodow"]] = counts
            else:
                data.by_venue[venue] = counts
        for r in await conn.fetch(REVENUE_SQL, *args):
            venue, currency, minor = r["venue_id"], r["currency"].strip(), int(r["revenue_minor"])
            sold = int(r["units_sold"])
            if r["level"] == 0:
                months = data.revenue_month.setdefault(venue, {})
                months.setdefault(r["month"], {})[currency] = minor
                sold_months = data.sold_month.setdefault(venue, {})
                sold_months.setdefault(r["month"], {})[currency] = sold
            else:
                data.revenue_venue.setdefault(venue, {})[currency] = minor
                data.sold_venue.setdefault(venue, {})[currency] = sold
        for r in await conn.fetch(CLOSED_SQL, *args):
            data.closed.setdefault(r["venue_id"], {})[r["month"]] = r["closed"]
        data.closed_date_units = await conn.fetchval(CLOSED_UNITS_SQL, *args)
        for r in await conn.fetch(IN_RANGE_SQL, *args[:3]):
            if r["venue_id"] is None:
                data.unassigned_bookings += r["bookings"]
                continue
            data.orphan_bookings += r["orphans"]
            data.bookings_in_range[r["venue_id"]] = r["bookings"]
            data.cancelled_in_range[r["venue_id"]] = r["cancelled"]
        for r in await conn.fetch(HISTORY_SQL, organization_id, ids, history_end):
            venue, month = r["venue_id"], r["month"]
            data.monthly_bookings.setdefault(venue, {})[month] = r["held"]
            if venue not in data.first_month or month < data.first_month[venue]:
                data.first_month[venue] = month
    return data


def _history_end(date_to: date) -> date:
    """The first date after the last whole month of ``[…, date_to]``."""
    after = date_to + timedelta(days=1)
    return after if after.day == 1 else date_to.replace(day=1)


# -- arithmetic -------------------------------------------------------------------------------


def _fraction_text(value: Fraction) -> str:
    q = Decimal(value.numerator) / Decimal(value.denominator)
    return str(q.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def per_unit(amount_minor: int, units: int, currency: str) -> str | None:
    """``amount_minor ÷ units`` in major units, half-even to the currency's minor unit.

    None when ``units`` is 0.
    """
    if units == 0:
        return None
    minor = (Decimal(amount_minor) / Decimal(units)).quantize(Decimal(1), ROUND_HALF_EVEN)
    return str(to_major(int(minor), currency))


def month_add(month: str, delta: int) -> str:
    """``YYYY-MM`` plus ``delta`` months."""
    y, m = int(month[:4]), int(month[5:7])
    index = y * 12 + (m - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_span(first: str, last: str) -> list[str]:
    """Every ``YYYY-MM`` from ``first`` to ``last`` inclusive (empty when last < first)."""
    out: list[str] = []
    m = first
    while m <= last:
        out.append(m)
        m = month_add(m, 1)
    return out


def range_months(date_from: date, date_to: date) -> list[tuple[str, int]]:
    """The months overlapping ``[date_from, date_to]`` as ``(YYYY-MM, dates inside)``."""
    out: list[tuple[str, int]] = []
    for month in month_span(date_from.isoformat()[:7], date_to.isoformat()[:7]):
        y, m = int(month[:4]), int(month[5:7])
        first = date(y, m, 1)
        last = date(y, m, calendar.monthrange(y, m)[1])
        out.append((month, (min(last, date_to) - max(first, date_from)).days + 1))
    return out


def seasonal_naive(history: Sequence[int], horizon: int, season: int = SEASON) -> list[int]:
    """Seasonal naive forecasts ``ŷ(T+h) = y(T+h−season·k)``, ``k = ⌈h/season⌉``, h = 1..horizon.

    Source: Hyndman & Athanasopoulos, Forecasting: Principles and Practice, 3rd ed., §5.2.

    Raises:
        ValueError: fewer than ``season`` observations.
    """
    if len(history) < season:
        raise ValueError(f"history: {len(history)} months; seasonal naive needs {season}")
    t = len(history)
    return [history[t + h - 1 - season * (-(-h // season))] for h in range(1, horizon + 1)]


@dataclass(frozen=True, slots=True)
class BacktestErrors:
    """Absolute errors of a back-test.

    Attributes:
        abs_errors: |actual − forecast| per hold-out month.
        pct_errors: |actual − forecast| ÷ actual for hold-out months with actual > 0.
    """

    abs_errors: tuple[int, ...]
    pct_errors: tuple[Fraction, ...]


def backtest(history: Sequence[int], holdout: int = HOLDOUT_MONTHS) -> BacktestErrors:
    """Errors of the seasonal naive method forecasting the last ``holdout`` months of
    ``history`` from the months before them (one origin, horizons 1..holdout).

    Raises:
        ValueError: the training part is shorter than one season.
    """
    train, actual = history[: len(history) - holdout], history[len(history) - holdout :]
    forecast = seasonal_naive(train, holdout)
    abs_errors = tuple(abs(a - f) for a, f in zip(actual, forecast, strict=True))
    pct = tuple(Fraction(e, a) for e, a in zip(abs_errors, actual, strict=True) if a > 0)
    return BacktestErrors(abs_errors, pct)


def mae_mape(errors: Sequence[BacktestErrors]) -> tuple[str | None, str | None, int, int]:
    """Pooled ``(MAE, MAPE %, hold-out months, months with actual > 0)`` of ``errors``.

    MAE = mean |e| (bookings); MAPE = mean |e| ÷ actual × 100 (FPP3 §5.8); both half-even to
    2 decimals, None when there is nothing to average.
    """
    abs_all = [e for b in errors for e in b.abs_errors]
    pct_all = [p for b in errors for p in b.pct_errors]
    mae = _fraction_text(Fraction(sum(abs_all), len(abs_all))) if abs_all else None
    mape = _fraction_text(sum(pct_all, Fraction(0)) * 100 / len(pct_all)) if pct_all else None
    return mae, mape, len(abs_all), len(pct_all)


# -- the report -------------------------------------------------------------------------------


def _capacity(venue: Venue) -> tuple[int | None, str]:
    if venue.capacity is None:
        return None, "unknown"
    return venue.capacity, "stated"


def _slots(venue: Venue, c: Counts) -> tuple[int | None, int | None, str | None]:
    """(available slots, occupied slots, occupancy rate) of ``c``; all None when the venue's
    capacity is unknown (the queries' capacity-1 figures are not shown)."""
    if venue.capacity is None:
        return None, None, None
    return c.available_slots, c.occupied_slots, percent(c.occupied_slots, c.available_slots)


def build_report(
    org: Organization,
    venues: Sequence[Venue],
    date_from: date,
    date_to: date,
    data: OccupancyData,
    forecast_months: int = FORECAST_MONTHS,
) -> ReportTable:
    """The venue occupancy report of ``org`` for ``[date_from, date_to]`` from ``data``.

    Args:
        org: the organisation (its currency labels venue-months without revenue).
        venues: the venues reported, in the order shown.
        date_from / date_to: the inclusive local date range.
        data: the figures (:func:`read_data`).
        forecast_months: months forecast after the last whole month of the range.

    Returns:
        Main table: occupancy per venue and month; sections: by weekday, revenue per
        available date (per month and per venue), recommendations, forecast, back-test.
    """
    months = range_months(date_from, date_to)
    empty = Counts()
    rows: list[list[Cell]] = []
    for venue in venues:
        cap, basis = _capacity(venue)
        for month, dates in months:
            c = data.by_month.get(venue.id, {}).get(month, empty)
            closed = data.closed.get(venue.id, {}).get(month, 0)
            rows.append(
                [
                    venue.id,
                    venue.name,
                    month,
                    cap,
                    basis,
                    dates,
                    closed,
                    c.available_dates,
                    *_slots(venue, c),
                    c.booked_units,
                ]
            )

    weekday_rows: list[list[Cell]] = []
    for venue in venues:
        total = data.by_venue.get(venue.id, empty)
        for dow in range(1, 8):
            c = data.by_weekday.get(venue.id, {}).get(dow, empty)
            index = None
            if c.available_dates and total.booked_units:
                index = percent(
                    c.booked_units * total.available_dates,
                    c.available_dates * total.booked_units,
                )
            weekday_rows.append(
                [
                    venue.id,
                    venue.name,
                    dow,
                    WEEKDAYS[dow - 1],
                    c.available_dates,
                    *_slots(venue, c),
                    c.booked_units,
                    index,
                ]
            )

    revenue_rows: list[list[Cell]] = []
    for venue in venues:
        for month, _ in months:
            c = data.by_month.get(venue.id, {}).get(month, empty)
            by_currency = data.revenue_month.get(venue.id, {}).get(month) or {org.currency: 0}
            sold = data.sold_month.get(venue.id, {}).get(month, {})
            for currency, minor in sorted(by_currency.items()):
                revenue_rows.append(
                    _revenue_row(venue, month, currency, minor, c, sold.get(currency, 0))
                )
    revenue_total_rows: list[list[Cell]] = []
    for venue in venues:
        c = data.by_venue.get(venue.id, empty)
        by_currency = data.revenue_venue.get(venue.id) or {org.currency: 0}
        sold = data.sold_venue.get(venue.id, {})
        for currency, minor in sorted(by_currency.items()):
            row = _revenue_row(venue, None, currency, minor, c, sold.get(currency, 0))
            revenue_total_rows.append([*row[:2], *row[3:]])

    recommendations = _recommendations(venues, months, data, org.currency)
    forecast_rows, backtest_rows, pooled = _forecast(venues, date_to, data, forecast_months)

    sections = (
        ReportSection(
            "occupancy_by_weekday",
            "Occupancy by venue and weekday",
            WEEKDAY_COLUMNS,
            weekday_rows,
            notes=("Weekdays of local dates in the organisation's time zone.",),
        ),
        ReportSection(
            "revpad_by_month",
            "Revenue per available date (RevPAD) by venue and month",
            REVENUE_COLUMNS,
            revenue_rows,
            chart=ChartSpec(
                "Revenue of available dates by month",
                "month",
                ("revenue",),
                series_column="currency",
            ),
            notes=(
                "Revenue of a booking is spread over its covered dates in whole minor units; "
                "only available dates inside the range count.",
                "RevPAS = revenue ÷ available slots, the venue analogue of RevPAR (room "
                "revenue ÷ rooms available, STR glossary).",
            ),
        ),
        ReportSection(
            "revpad_by_venue",
            "Revenue per available date (RevPAD) by venue over the whole range",
            REVENUE_TOTAL_COLUMNS,
            revenue_total_rows,
        ),
        ReportSection(
            "recommendations",
            "Recommendations",
            RECOMMENDATION_COLUMNS,
            recommendations,
            notes=tuple(r.text for r in RULES),
        ),
        ReportSection(
            "demand_forecast",
            f"Demand forecast: bookings per venue and month over the next {forecast_months} months",
            FORECAST_COLUMNS,
            forecast_rows,
            chart=ChartSpec("Forecast bookings by month", "month", ("forecast_bookings",)),
            notes=(
                f"Method: {METHOD}: each month repeats the same month of the last year of "
                "history (history = every month from the venue's first booking to the last "
                "whole month of the range).",
            ),
        ),
        ReportSection(
            "forecast_backtest",
            "Forecast back-test",
            BACKTEST_COLUMNS,
            backtest_rows,
            notes=(
                f"The last {HOLDOUT_MONTHS} months of each venue's history are forecast from "
                "the months before them; MAE = mean |actual − forecast| (bookings), MAPE = "
                "mean |actual − forecast| ÷ actual × 100 over months with actual > 0 "
                "(Hyndman & Athanasopoulos, FPP3 §5.8).",
            ),
        ),
    )

    kpis = _kpis(venues, data, recommendations, pooled, forecast_rows, forecast_months)
    return new_table(
        REPORT_TYPE,
        org,
        date_from,
        date_to,
        columns=COLUMNS,
        rows=rows,
        notes=(
            "Available date = a date of the range on which the venue is not closed; "
            "available slots = available dates × capacity (events per date).",
            "Occupied slot = a non-cancelled booking (booked, completed or no-show) covering "
            "the date, at most capacity per date; a stay of n nights covers its first n dates, "
            "a wedding its service date.",
            "Occupancy rate = occupied ÷ available slots × 100 (2 decimals, half-even).",
            "A venue whose capacity is unknown has no slots, occupancy or RevPAS (empty), is "
            "left out of the occupancy key figures, and rules R1/R2 skip it.",
        ),
        chart=CHART,
        sections=sections,
        kpis=kpis,
        validation=_validation(venues, data),
    )


def _revenue_row(
    venue: Venue, month: str | None, currency: str, minor: int, c: Counts, sold: int
) -> list[Cell]:
    slots = None if venue.capacity is None else c.available_slots
    return [
        venue.id,
        venue.name,
        month,
        currency,
        c.available_dates,
        slots,
        money(minor, currency),
        minor,
        per_unit(minor, c.available_dates, currency),
        None if slots is None else per_unit(minor, slots, currency),
        sold,
        per_unit(minor, sold, currency),
    ]


def _recommendations(
    venues: Sequence[Venue],
    months: Sequence[tuple[str, int]],
    data: OccupancyData,
    currency_of_org: str,
) -> list[list[Cell]]:
    out: list[list[Cell]] = []
    empty = Counts()
    for venue in venues:
        stated = venue.capacity is not None
        total = data.by_venue.get(venue.id, empty)
        weekdays = data.by_weekday.get(venue.id, {})
        for dow in range(1, 8):
            c = weekdays.get(dow, empty)
            if c.available_dates < MIN_WEEKDAY_DATES:
                continue
            name = WEEKDAYS[dow - 1]
            rate = percent(c.occupied_slots, c.available_slots)
            # exact comparisons throughout: the printed rate is rounded, the test is not
            if (
                stated
                and rate is not None
                and (c.occupied_slots * 100 < R1.threshold_pct * c.available_slots)
            ):
                out.append(
                    _rec(
                        R1,
                        venue,
                        f"{name}s",
                        f"occupancy {rate}% ({c.occupied_slots} of {c.available_slots} slots)",
                        "< 40.00%",
                        f"consider a weekday discount or midweek package for {name}s",
                    )
                )
            if total.booked_units and total.available_dates:
                # index < threshold ⇔ units·T_dates·100 < threshold·dates·T_units (exact)
                lhs = c.booked_units * total.available_dates * 100
                rhs = R3.threshold_pct * c.available_dates * total.booked_units
                if lhs < rhs:
                    index = percent(
                        c.booked_units * total.available_dates,
                        c.available_dates * total.booked_units,
                    )
                    out.append(
                        _rec(
                            R3,
                            venue,
                            f"{name}s",
                            f"demand index {index}% ({c.booked_units} booked units on "
                            f"{c.available_dates} dates; venue: {total.booked_units} on "
                            f"{total.available_dates})",
                            "< 80.00%",
                            f"consider an offer for {name}s",
                        )
                    )
        if stated:
            for month, _ in months:
                c = data.by_month.get(venue.id, {}).get(month, empty)
                rate = percent(c.occupied_slots, c.available_slots)
                if rate is not None and c.occupied_slots * 100 >= (
                    R2.threshold_pct * c.available_slots
                ):
                    out.append(
                        _rec(
                            R2,
                            venue,
                            month,
                            f"occupancy {rate}% ({c.occupied_slots} of {c.available_slots} slots)",
                            "≥ 90.00%",
                            f"consider higher rates or a minimum spend in {month}",
                        )
                    )
        booked = data.bookings_in_range.get(venue.id, 0)
        cancelled = data.cancelled_in_range.get(venue.id, 0)
        if booked and cancelled * 100 >= R4.threshold_pct * booked:
            out.append(
                _rec(
                    R4,
                    venue,
                    "range",
                    f"cancellation rate {percent(cancelled, booked)}% ({cancelled} of "
                    f"{booked} bookings)",
                    "≥ 25.00%",
                    "consider a non-refundable deposit or stricter cancellation terms",
                )
            )
        venue_revenue = data.revenue_venue.get(venue.id, {})
        main = main_currency(venue_revenue, data.revenue_month.get(venue.id, {}), currency_of_org)
        for month, _ in months:
            c = data.by_month.get(venue.id, {}).get(month, empty)
            if not c.available_dates or not total.available_dates or main is None:
                continue
            for currency, total_minor in ((main, venue_revenue[main]),):
                minor = data.revenue_month.get(venue.id, {}).get(month, {}).get(currency, 0)
                # RevPAD_m < 50% RevPAD_range ⇔ minor·T_dates·100 < 50·total·dates (exact)
                if minor * total.available_dates * 100 < (
                    R5.threshold_pct * total_minor * c.available_dates
                ):
                    m_pad = per_unit(minor, c.available_dates, currency)
                    t_pad = per_unit(total_minor, total.available_dates, currency)
                    out.append(
                        _rec(
                            R5,
                            venue,
                            month,
                            f"RevPAD {currency} {m_pad} vs {t_pad} over the range "
                            f"({percent(minor * total.available_dates, total_minor * c.available_dates)}%)",  # noqa: E501
                            "< 50.00% of the range's RevPAD",
                            f"consider off-peak packages for {month}",
                        )
                    )
    return out


def _rec(
    rule: Rule, venue: Venue, period: str, figure: str, threshold: str, text: str
) -> list[Cell]:
    return [rule.id, venue.id, venue.name, period, figure, threshold, text]


@dataclass(frozen=True, slots=True)
class _Pooled:
    mae: str | None
    mape: str | None
    months: int
    mape_months: int
    holdout_from: str | None
    holdout_to: str | None


def _forecast(
    venues: Sequence[Venue], date_to: date, data: OccupancyData, horizon: int
) -> tuple[list[list[Cell]], list[list[Cell]], _Pooled]:
    last = month_add(_history_end(date_to).isoformat()[:7], -1)
    forecast_rows: list[list[Cell]] = []
    backtest_rows: list[list[Cell]] = []
    all_errors: list[BacktestErrors] = []
    spans: set[tuple[str, str]] = set()
    for venue in venues:
        first = data.first_month.get(venue.id)
        months = month_span(first, last) if first else []
        counts = data.monthly_bookings.get(venue.id, {})
        history = [counts.get(m, 0) for m in months]
        status = "ok"
        if len(history) < SEASON:
            status = f"no forecast: {len(history)} months of history, {SEASON} needed"
        else:
            values = seasonal_naive(history, horizon)
            for h, value in enumerate(values, start=1):
                basis = month_add(last, h - SEASON * (-(-h // SEASON)))
                forecast_rows.append(
                    [venue.id, venue.name, month_add(last, h), value, basis, METHOD]
                )
        row: list[Cell] = [venue.id, venue.name, METHOD, None, None, 0, None, None, 0, status]
        if len(history) >= SEASON + HOLDOUT_MONTHS:
            errors = backtest(history)
            all_errors.append(errors)
            mae, mape, n, n_pct = mae_mape([errors])
            span = (months[-HOLDOUT_MONTHS], months[-1])
            spans.add(span)
            row = [venue.id, venue.name, METHOD, *span, n, mae, mape, n_pct, "ok"]
        elif status == "ok":
            row[-1] = (
                f"no back-test: {len(history)} months of history, {SEASON + HOLDOUT_MONTHS} needed"
            )
        backtest_rows.append(row)
    mae, mape, n, n_pct = mae_mape(all_errors)
    span_from = span_to = None
    if len(spans) == 1:
        span_from, span_to = next(iter(spans))
    pooled = _Pooled(mae, mape, n, n_pct, span_from, span_to)
    if len(venues) > 1:
        backtest_rows.append(
            [
                "all venues",
                "pooled over venue-months",
                METHOD,
                span_from,
                span_to,
                n,
                mae,
                mape,
                n_pct,
                "ok" if all_errors else "no back-test",
            ]
        )
    return forecast_rows, backtest_rows, pooled


def _kpis(
    venues: Sequence[Venue],
    data: OccupancyData,
    recommendations: Sequence[Sequence[Cell]],
    pooled: _Pooled,
    forecast_rows: Sequence[Sequence[Cell]],
    horizon: int,
) -> tuple[Kpi, ...]:
    empty = Counts()
    known = [v for v in venues if v.capacity is not None]  # unknown capacity: left out
    slots = sum(data.by_venue.get(v.id, empty).available_slots for v in known)
    occupied = sum(data.by_venue.get(v.id, empty).occupied_slots for v in known)
    dates = sum(data.by_venue.get(v.id, empty).available_dates for v in venues)
    rate = percent(occupied, slots)
    kpis = [
        Kpi("Occupancy, all venues", f"{rate}%" if rate is not None else "n/a"),
        Kpi(
            "Occupied of available slots",
            f"{occupied:,} of {slots:,}" if known else "n/a (no venue has a capacity)",
        ),
    ]
    revenue: dict[str, int] = defaultdict(int)
    sold: dict[str, int] = defaultdict(int)
    for v in venues:
        for currency, minor in data.revenue_venue.get(v.id, {}).items():
            revenue[currency] += minor
        for currency, units in data.sold_venue.get(v.id, {}).items():
            sold[currency] += units
    for currency, minor in sorted(revenue.items()):
        kpis.append(Kpi(f"Revenue of available dates ({currency})", money_grouped(minor, currency)))
        pad = per_unit(minor, dates, currency)
        kpis.append(
            Kpi(
                f"RevPAD, all venues ({currency})",
                "n/a" if pad is None else format(Decimal(pad), ","),
            )
        )
        adr = per_unit(minor, sold[currency], currency)
        kpis.append(
            Kpi(
                f"ADR, all venues ({currency})",
                "n/a" if adr is None else format(Decimal(adr), ","),
            )
        )
    forecast_total = sum(int(str(r[3])) for r in forecast_rows)
    kpis.append(Kpi(f"Forecast bookings, next {horizon} months", f"{forecast_total:,}"))
    if pooled.mae is not None:
        kpis.append(Kpi("Forecast back-test MAE (bookings per venue-month)", pooled.mae))
    if pooled.mape is not None:
        kpis.append(Kpi("Forecast back-test MAPE", f"{pooled.mape}%"))
    kpis.append(Kpi("Recommendations", str(len(recommendations))))
    return tuple(kpis)


def _validation(venues: Sequence[Venue], data: OccupancyData) -> tuple[str, ...]:
    out: list[str] = []
    if not any(data.bookings_in_range.values()) and not (
        data.unassigned_bookings or data.orphan_bookings
    ):
        # a tenant fed only through Kafka: its live tables are not copied into the history
        # (a trial user read a report of zeros with advice and nothing saying why)
        out.append(
            "warning: no bookings in the organisation's PostgreSQL history for this range:"
            " every figure is 0 and the recommendations do not apply (the history is loaded"
            " by your ETL, `wedding-engine replay` or `synth`; the live tables are not copied"
            " into it: see the README, Loading your own history)"
        )
    unknown = [v.id for v in venues if v.capacity is None]
    if unknown:
        out.append(
            f"warning: capacity unknown for {len(unknown)} venue(s) ({', '.join(unknown)}); "
            "their slots, occupancy and RevPAS are not computed (register a capacity: "
            "wedding-engine venue ORG VENUE --capacity N)"
        )
    for v in venues:
        over = data.by_venue.get(v.id, Counts()).overbooked_dates
        if over and v.capacity is not None:
            out.append(
                f"warning: {v.id}: {over} available date(s) with more non-cancelled bookings "
                f"than its capacity ({v.capacity}); occupancy counts at most the capacity"
            )
        currencies = data.revenue_venue.get(v.id, {})
        if len(currencies) > 1:
            out.append(
                f"info: {v.id}: revenue in {len(currencies)} currencies "
                f"({', '.join(sorted(currencies))}), shown separately"
            )
    if data.closed_date_units:
        out.append(
            f"warning: {data.closed_date_units} booking-date(s) of non-cancelled bookings fall "
            "on closed dates; they count neither as occupied nor as revenue"
        )
    if data.unassigned_bookings:
        out.append(f"warning: {data.unassigned_bookings} booking(s) in the range have no venue")
    if data.orphan_bookings:
        out.append(
            f"error: {data.orphan_bookings} booking(s) in the range name a venue that does "
            "not exist"
        )
    return tuple(out)


async def build(ctx: ReportContext) -> ReportTable:
    """The report of ``ctx.request`` (the type's builder). Filtered by venue, its findings are
    the named venues' only (no count of bookings without a venue or with an unknown one).

    Raises:
        ReportInputError: ``data_filters.venue_id`` names an unknown venue, or the
            organisation has no venues.
    """
    req = ctx.request
    venues = selected_venues(ctx)
    async with ctx.pool.acquire() as conn:
        data = await read_data(
            conn, ctx.organization.id, [v.id for v in venues], req.date_from, req.date_to
        )
    if "venue_id" in req.data_filters:
        # bookings with no venue or an unknown one are outside every named venue: not this
        # report's, and a venue-scoped token must not learn of them
        data.unassigned_bookings = data.orphan_bookings = 0
    table = build_report(ctx.organization, venues, req.date_from, req.date_to, data)
    if "venue_id" in req.data_filters:  # the checks below read the whole organisation
        return table
    return await with_validation(ctx, table, ("bookings",), OWN_FINDINGS)


OWN_FINDINGS = frozenset(
    {
        "bookings.venue_id:null",
        "bookings.client_id:null",
        "bookings.currency:mixed_currency",
        "bookings.id:duplicate",
    }
)
"""The shared history checks (:mod:`stream_app.reports.validation`) this report leaves out:
bookings without a venue and currencies are in its own findings, a venue's bookings need no
client, and equal rows are a block of rooms or dates booked together (one row a unit; the
hotel data set has 39,551 such). The rest (ISO 4217 codes, cancellations without a date or
before the booking, absurd amounts and stays, bookings made after their date) run on every
organisation-wide report: a trial user's bookings in ``usd`` and of USD 5,000,000 passed
unremarked."""


REPORT = ReportType(
    name=REPORT_TYPE,
    title="Venue occupancy",
    cache_class="operational",
    build=build,
    # the history it reads is the record of the bookings stream: a booking event makes a
    # cached copy stale
    reads=frozenset({"bookings"}),
    venue_filter=True,
)
