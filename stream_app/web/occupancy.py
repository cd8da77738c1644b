"""``GET /orgs/{org}/venues/{venue}/occupancy``: live occupancy of a venue per date or month.

Query: ``grain=day&from=YYYY-MM-DD&to=YYYY-MM-DD`` or ``grain=month&from=YYYY-MM&to=YYYY-MM``
(at most 400 dates). Capacity and closed dates come from PostgreSQL (tenant transaction), the
bookings from the venue's day rows, from whichever worker holds them. Definitions:
:mod:`stream_app.tables.occupancy`. Answer::

    {"organization_id", "venue_id", "grain", "capacity" (null when unknown), "capacity_known",
     "periods": [{"period", "available_slots", "booked", "occupied_slots", "closed_dates",
                  "occupancy_rate"}]}

A venue without a registered capacity answers ``available_slots``, ``occupied_slots`` and
``occupancy_rate`` null (unknown, not 100 %); ``booked`` and ``closed_dates`` are counted.

Errors: 400 naming ``grain``/``from``/``to``; 404 ``unknown_venue``; 401/403 as every route.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aiohttp import web

from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import tenant_transaction
from stream_app.queries.routing import local_periods, owner_url, remote_periods
from stream_app.tables.occupancy import occupancy
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.inputs import period_query
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import MAX_PERIODS, forwarded_by_a_worker, page, period_labels


def date_range(grain: str, start: str, end: str) -> list[date]:
    """The dates from ``start`` to ``end`` (days, or whole months), validated like every
    period read (:func:`stream_app.web.views.period_labels`).

    Raises:
        ApiError: 400 naming the bad parameter.
    """
    if grain not in ("day", "month"):
        raise ApiError(400, "invalid_field", "grain must be 'day' or 'month'", field="grain")
    labels = period_labels(grain, start, end)
    lo = date.fromisoformat(labels[0] if grain == "day" else labels[0] + "-01")
    hi = date.fromisoformat(labels[-1] if grain == "day" else labels[-1] + "-01")
    if grain == "month":
        hi = (hi + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    days = (hi - lo).days + 1
    if days > MAX_PERIODS:
        raise ApiError(400, "range_too_large", f"at most {MAX_PERIODS} dates per request", "to")
    return [lo + timedelta(days=i) for i in range(days)]


@page("/orgs/{org}/venues/{venue}/occupancy", permission=Permission.TABLES_READ)
async def venue_occupancy(
    self: Any, request: web.Request, org: str, venue: str
) -> web.StreamResponse:
    """A venue's live occupancy per date or month (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    grain, start, end = period_query(request, "day", "query parameter {name!r} is required")
    dates = date_range(grain, start, end)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        found = await conn.fetchrow(
            "SELECT capacity FROM venues WHERE organization_id = $1 AND id = $2", org, venue
        )
        if found is None:
            raise ApiError(404, "unknown_venue", f"venue {venue!r} does not exist", "path.venue")
        closed = {
            r["closed_on"]
            for r in await conn.fetch(
                "SELECT closed_on FROM venue_closures WHERE organization_id = $1"
                " AND venue_id = $2 AND closed_on BETWEEN $3 AND $4",
                org,
                venue,
                dates[0],
                dates[-1],
            )
        }
    labels = [d.isoformat() for d in dates]
    owner = owner_url(org, venue)
    if owner is None:
        rows = local_periods(org, venue, "day", labels)
    elif forwarded_by_a_worker(request, org):
        raise ApiError(503, "rebalancing", "partition ownership is moving; retry")
    else:
        rows = await remote_periods(owner, org, venue, "day", labels[0], labels[-1])
    booked_on = {date.fromisoformat(r["period"]): r["bookings"] - r["cancellations"] for r in rows}
    capacity = found["capacity"]
    periods = occupancy(dates, booked_on, capacity, closed, grain)
    return json_response(
        {
            "organization_id": org,
            "venue_id": venue,
            "grain": grain,
            "capacity": capacity,  # None: unknown, and so are the slots and the rates
            "capacity_known": capacity is not None,
            "periods": [
                {
                    "period": p.period,
                    "available_slots": p.available_slots,
                    "booked": p.booked,
                    "occupied_slots": p.occupied_slots,
                    "closed_dates": p.closed_dates,
                    "occupancy_rate": p.occupancy_rate,
                }
                for p in periods
            ],
        }
    )
