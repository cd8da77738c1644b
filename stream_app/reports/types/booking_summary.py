"""Report type ``monthly_booking_summary``: bookings, cancellations and revenue per venue and month.

Definitions (those of :mod:`stream_app.tables.bookings`):

- a month is a calendar month of the service date (wedding date, or the stay's first night)
  in the organisation's IANA zone; a range that starts or ends inside a month counts only
  the days inside the range (read from the day rows), whole months come from the month rows;
- ``bookings``: bookings whose service date falls in the month, cancelled ones included;
- ``cancellations``: those of them that were cancelled;
- ``cancellation_rate``: cancellations ÷ bookings × 100, rounded half-even to 2 decimals
  (empty when there are no bookings);
- ``revenue``: booked value minus cancelled value, in the row's currency, exact; one row per
  venue, month and currency (a venue with no bookings in a month has one row with zeros in the
  organisation's currency). ``bookings``, ``cancellations`` and ``cancellation_rate`` are the
  venue-month's, repeated on each of its currency rows (:data:`REPEATED_COUNTS_NOTE`).

Data sources: the venue list and the organisation (name, zone, currency) come from
PostgreSQL; the figures come from the ``venue-bookings`` table of the bookings agent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from stream_app.db.tenancy import Organization, Venue
from stream_app.reports.model import Cell, ChartSpec, Column, ReportTable
from stream_app.reports.types.base import ReportContext, ReportType, new_table, selected_venues
from stream_app.reports.types.columns import (
    CANCELLATION_RATE,
    CANCELLATIONS,
    REVENUE_CURRENCY,
    VENUE,
)
from stream_app.reports.types.figures import money, percent
from stream_app.tables.bookings import VenueTotals, sum_totals, table_key

REPORT_TYPE = "monthly_booking_summary"

COLUMNS = (
    *VENUE,
    Column("month", "month", "calendar month of the service date (YYYY-MM, organisation zone)"),
    Column(
        "bookings",
        "int",
        "bookings with a service date in the month (the venue-month's, repeated on each of"
        " its currency rows: count a venue-month once)",
    ),
    Column(
        "cancellations",
        CANCELLATIONS.type,
        "of which cancelled (repeated on each currency row of the venue-month, as bookings)",
    ),
    CANCELLATION_RATE,
    REVENUE_CURRENCY,
    Column("revenue", "money", "booked minus cancelled value, major units, exact"),
    Column("revenue_minor", "int", "the same in minor units (cents)"),
)

CHART = ChartSpec(
    title="Revenue by month (all venues)",
    category_column="month",
    value_columns=("revenue",),
    series_column="currency",
)
"""Revenue summed over venues per month, one series per currency.

Revenue rather than bookings: a venue-month with bookings in two currencies has two rows that
both carry the venue-month's booking count, so summing ``bookings`` over rows would count it
twice; revenue is split by currency and adds up exactly.
"""

REPEATED_COUNTS_NOTE = (
    "A venue-month with revenue in several currencies has one row per currency; bookings,"
    " cancellations and the cancellation rate are the venue-month's and repeated on each of"
    " its rows: summing the bookings column over such rows counts them twice."
)
"""The report's note on :data:`CHART`'s reason (in every format that carries notes: JSON,
Excel, PDF, PowerPoint; the CSV carries the column names only)."""

Lookup = Callable[[str], dict[str, Any] | None]
"""Reads one row of the ``venue-bookings`` table by key; ``None`` when absent."""


def months_in(date_from: date, date_to: date) -> list[tuple[str, list[date] | None]]:
    """The months overlapping ``[date_from, date_to]`` as ``(YYYY-MM, days)``.

    ``days`` is None when the whole month is inside the range, else the list of its days that
    are inside.
    """
    out: list[tuple[str, list[date] | None]] = []
    first = date_from.replace(day=1)
    while first <= date_to:
        nxt = (first + timedelta(days=32)).replace(day=1)
        last = nxt - timedelta(days=1)
        lo, hi = max(first, date_from), min(last, date_to)
        if lo == first and hi == last:
            out.append((first.isoformat()[:7], None))
        else:
            out.append(
                (first.isoformat()[:7], [lo + timedelta(d) for d in range((hi - lo).days + 1)])
            )
        first = nxt
    return out


def _totals(row: dict[str, Any] | None) -> VenueTotals:
    return VenueTotals.from_json(row["totals"] if row else None)


def venue_month_totals(
    lookup: Lookup, organization_id: str, venue_id: str, month: str, days: list[date] | None
) -> VenueTotals:
    """Totals of one venue in one month, or in the listed days of it."""
    if days is None:
        return _totals(lookup(table_key(organization_id, venue_id, "month", month)))
    return sum_totals(
        _totals(lookup(table_key(organization_id, venue_id, "day", day.isoformat())))
        for day in days
    )


def cancellation_rate(bookings: int, cancellations: int) -> str | None:
    """``cancellations / bookings × 100`` to 2 decimals, half-even; None when no bookings."""
    return percent(cancellations, bookings)


def build_rows(
    lookup: Lookup,
    org: Organization,
    venues: Sequence[Venue],
    date_from: date,
    date_to: date,
) -> Iterator[list[Cell]]:
    """The report's rows: per venue (by id), per month, per currency."""
    months = months_in(date_from, date_to)
    for venue in venues:
        for month, days in months:
            t = venue_month_totals(lookup, org.id, venue.id, month, days)
            revenue = t.revenue_minor or {org.currency: 0}
            for currency, minor in sorted(revenue.items()):
                yield [
                    venue.id,
                    venue.name,
                    month,
                    t.bookings,
                    t.cancellations,
                    cancellation_rate(t.bookings, t.cancellations),
                    currency,
                    money(minor, currency),
                    minor,
                ]


def unseen_bookings(rows: Sequence[Sequence[Cell]]) -> tuple[str, ...]:
    """A warning naming the venue-months whose cancellations outnumber their bookings or whose
    revenue is negative (rows as :func:`build_rows` makes them): cancellations of bookings the
    live tables never saw, which a trial user met after loading a history into PostgreSQL and
    cancelling one of its bookings live (a revenue of −22,895.31 and nothing saying why)."""
    odd = sorted(
        {f"{r[0]} {r[2]}" for r in rows if int(str(r[4])) > int(str(r[3])) or int(str(r[8])) < 0}
    )
    if not odd:
        return ()
    shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
    return (
        f"warning: {len(odd)} venue-month(s) have more cancellations than bookings or a"
        f" negative revenue ({shown}): cancellations of bookings these live tables never saw"
        " (a history loaded into PostgreSQL is not in them: see the README, History and live"
        " events together)",
    )


def build_report(
    lookup: Lookup,
    org: Organization,
    venues: Sequence[Venue],
    date_from: date,
    date_to: date,
) -> ReportTable:
    """The monthly booking summary of ``org`` for the local dates ``[date_from, date_to]``."""
    rows = list(build_rows(lookup, org, venues, date_from, date_to))
    return new_table(
        REPORT_TYPE,
        org,
        date_from,
        date_to,
        columns=COLUMNS,
        rows=rows,
        validation=unseen_bookings(rows),
        notes=(
            "Months are calendar months of the service date in the organisation's time zone.",
            "Revenue = booked value − cancelled value, exact, per currency; "
            "currencies are never added together.",
            REPEATED_COUNTS_NOTE,
        ),
        chart=CHART,
    )


async def build(ctx: ReportContext) -> ReportTable:
    """The report of ``ctx.request`` (the type's builder).

    Raises:
        ReportInputError: ``data_filters.venue_id`` names an unknown venue, or the
            organisation has no venues.
    """
    req = ctx.request
    venues = selected_venues(ctx)
    rows = await ctx.read_venue_rows(
        ctx.organization.id, [v.id for v in venues], req.date_from, req.date_to
    )
    return build_report(rows.get, ctx.organization, venues, req.date_from, req.date_to)


REPORT = ReportType(
    name=REPORT_TYPE,
    title="Monthly booking summary",
    cache_class="financial",
    build=build,
    reads=frozenset({"bookings"}),
    venue_filter=True,
)
