"""Rows of the live ``venue-bookings`` table for a report, wherever they are held.

Part of the reports layer: rows of venues held by this worker come from its table, the others
from the worker that holds them, over HTTP (the owner routing of
:mod:`stream_app.queries.routing`).
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.routing import as_table_row, local_periods, owner_url, remote_periods
from stream_app.reports.errors import ReportFailure
from stream_app.reports.types.booking_summary import months_in
from stream_app.runtime.context import outside_any_event
from stream_app.tables.bookings import table_key

YIELD_EVERY = 50
"""Venues read between two returns to the event loop. A venue held here is read from RocksDB
without awaiting, so a report over 30,000 venues held the worker's loop for ~20 s (an
attacker's round: another tenant's request was not even recorded for 12.7 s); now the loop
serves other work every 50 venues."""


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
    for n, venue_id in enumerate(venue_ids, start=1):
        if n % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # the local reads do not await: let other work run
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
