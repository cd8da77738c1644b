"""Rows of the live ``venue-bookings`` table for a report, wherever they are held.

Part of the reports layer: rows of venues held by this worker come from its table, the others
from the worker that holds them, over HTTP (the owner routing of
:mod:`stream_app.queries.routing`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.routing import as_table_row, local_periods, owner_url, remote_periods
from stream_app.reports.errors import ReportFailure
from stream_app.reports.types.booking_summary import months_in
from stream_app.runtime.context import outside_any_event
from stream_app.tables.bookings import table_key


async def read_venue_rows(
    organization_id: str, venue_ids: list[str], date_from: date, date_to: date
) -> dict[str, dict[str, Any]]:
    """The table rows a booking summary of ``[date_from, date_to]`` needs, by table key.

    Rows of venues held by this worker come from its table; the others from the worker that
    holds them, over HTTP (:mod:`stream_app.queries.routing`).

    Raises:
        ReportFailure: a holder of some venue's rows cannot be reached (retriable).
    """
    months = months_in(date_from, date_to)
    whole = [m for m, days in months if days is None]
    partial_days = [d.isoformat() for _, days in months if days for d in days]
    wanted: list[tuple[str, list[str]]] = [("month", whole), ("day", partial_days)]
    rows: dict[str, dict[str, Any]] = {}
    for venue_id in venue_ids:
        try:
            owner = owner_url(organization_id, venue_id)
            for grain, periods in wanted:
                if not periods:
                    continue
                if owner is None:
                    with outside_any_event():
                        found = local_periods(organization_id, venue_id, grain, periods)
                else:
                    found = await remote_periods(
                        owner, organization_id, venue_id, grain, periods[0], periods[-1]
                    )
                for p in found:
                    key = table_key(organization_id, venue_id, grain, p["period"])  # type: ignore[arg-type]
                    rows[key] = as_table_row(p)
        except QueryUnavailableError as exc:
            raise ReportFailure(f"venue {venue_id!r}: {exc.reason}", retriable=True) from exc
    return rows
