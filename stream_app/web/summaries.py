"""HTTP reads of organisation-wide summaries, gathered from every worker's partitions.

- ``GET /orgs/{org}/interactions/summary?from=YYYY-MM&to=YYYY-MM``: per cohort month (the
  month of each client's first inquiry in the organisation's IANA zone): clients, responded,
  first-response seconds (median and p90 by nearest rank, mean rounded down), converted, the
  conversion rate (exact fraction and basis points), days to book, direct bookings; and over
  all clients: the ratings distribution and average, the NPS distribution and score.
- ``GET /orgs/{org}/payments/summary``: per currency, collected, refunded, booked and
  outstanding, minor units.
- ``GET /orgs/{org}/suppliers/summary?from=YYYY-MM&to=YYYY-MM``: per calendar month of the
  organisation's zone, tasks and
  deliveries (on time, late, without a due date) and workload per person, over the
  organisation's suppliers.

Definitions and shapes: :mod:`stream_app.tables.summaries`; how the parts are gathered and
checked complete: :mod:`stream_app.queries.scatter`. Every route needs a bearer token of ``org``;
a bad or unknown query parameter is a 400 naming it (``field``), as is the workers' own part
header (``X-Wedding-Summary-Part``) sent with a client's token; an organisation unknown to
PostgreSQL is a 404 for the interactions summary (its months need the organisation's zone);
503 ``recovering`` / ``incomplete`` / ``owner_unavailable`` when not every partition can be
read right now (retry).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from stream_app import iana
from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.queries.scatter import (
    PART_HEADER,
    Compute,
    gather_parts,
    local_part,
    org_raw,
    org_rows,
)
from stream_app.tables import summaries
from stream_app.topology import (
    booking_payments_table,
    client_interactions_table,
    supplier_activity_table,
    venue_bookings,
)
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.inputs import allow_query, known_organization, require_query
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page, period_labels

_MONTH = re.compile(r"^\d{4}-\d{2}$")


def month_range(request: web.Request) -> list[str]:
    """The months ``from``..``to`` (``YYYY-MM``, inclusive) of the query, validated.

    Raises:
        ApiError: 400 ``missing_field`` / ``invalid_field`` / ``range_too_large`` naming the
            parameter (a missing or malformed bound, ``to`` before ``from``, a year outside
            the supported range, more than 400 months).
    """
    q = request.query
    for name in ("from", "to"):  # in turn: a bad 'from' is named before a missing 'to'
        require_query(request, (name,), "query parameter {name!r} (YYYY-MM) is required")
        value = q[name]
        try:
            if not _MONTH.match(value):
                raise ValueError
            date.fromisoformat(value + "-01")
        except ValueError:
            raise ApiError(
                400, "invalid_field", f"{name} must be a month YYYY-MM, got {value!r}", name
            ) from None
    return period_labels("month", q["from"], q["to"])


def _zone_param(request: web.Request) -> ZoneInfo:
    name = request.query.get("zone", "")
    try:
        return iana.zone(name)
    except ValueError:
        raise ApiError(400, "invalid_field", f"zone {name!r} is not an IANA zone", "zone") from None


def _path(org: str, tail: str) -> str:
    return f"/orgs/{quote(org, safe='')}/{tail}"


def _part_request(request: web.Request, org: str) -> bool:
    """Whether ``request`` (checked against ``org``) asks for this worker's part only
    (:data:`~stream_app.queries.scatter.PART_HEADER`), which only another worker may do.

    Raises:
        ApiError: 400 ``invalid_field`` naming the header when a client's token sends it (a
            part shows the worker's partitions, and takes the internal ``zone`` parameter);
            403 ``forbidden`` naming ``role`` when a worker-to-worker token leaves it out
            (a whole summary fans out to every worker: not for a token that skips the
            rate limits).
    """
    principal = authenticate(request, settings.jwt_secret, org)
    if PART_HEADER not in request.headers:
        if principal.internal:  # the workers ask each other for parts only, never the whole
            raise ApiError(
                403,
                "forbidden",
                f"a worker-to-worker token asks for a worker's part ({PART_HEADER}) only",
                field="role",
            )
        return False
    if not principal.internal:
        raise ApiError(
            400,
            "invalid_field",
            f"the header {PART_HEADER} is for the workers' own requests; leave it out",
            field=PART_HEADER,
        )
    return True


@page("/orgs/{org}/interactions/summary", permission=Permission.TABLES_READ, forwarded=True)
async def interactions_summary(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's interactions summary (see the module docstring)."""
    part_request = _part_request(request, org)
    allow_query(request, {"from", "to", "zone"} if part_request else {"from", "to"})
    months = month_range(request)
    tables = [client_interactions_table]

    def compute(zone: ZoneInfo) -> Compute:
        def read(held: dict[str, list[int]]) -> Callable[[], Any]:
            rows = org_raw(client_interactions_table, org, next(iter(held.values())))
            return lambda: summaries.interactions_part(
                org_rows(client_interactions_table, org, rows), zone, months
            )

        return read

    if part_request:
        return json_response(await local_part(tables, compute(_zone_param(request)), org))
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        organization = await known_organization(conn, org)
    zone = ZoneInfo(organization.time_zone)
    parts = await gather_parts(
        tables,
        org,
        _path(org, "interactions/summary"),
        {"from": months[0], "to": months[-1], "zone": organization.time_zone},
        compute(zone),
    )
    return json_response(
        {
            "organization_id": org,
            "time_zone": organization.time_zone,
            "from": months[0],
            "to": months[-1],
            **summaries.finish_interactions(summaries.merge_interactions(parts), months),
        }
    )


@page("/orgs/{org}/payments/summary", permission=Permission.TABLES_READ, forwarded=True)
async def payments_summary(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's payments summary per currency (see the module docstring)."""
    part_request = _part_request(request, org)
    allow_query(request, set())
    tables = [booking_payments_table, venue_bookings]
    payments_changelog = booking_payments_table.changelog_topic.get_topic_name()
    bookings_changelog = venue_bookings.changelog_topic.get_topic_name()

    def compute(held: dict[str, list[int]]) -> Callable[[], Any]:
        payments = org_raw(booking_payments_table, org, held[payments_changelog])
        bookings = org_raw(venue_bookings, org, held[bookings_changelog])
        return lambda: summaries.payments_part(
            org_rows(booking_payments_table, org, payments),
            org_rows(venue_bookings, org, bookings, raw=True),
        )

    if part_request:
        return json_response(await local_part(tables, compute, org))
    parts = await gather_parts(tables, org, _path(org, "payments/summary"), {}, compute)
    return json_response(
        {
            "organization_id": org,
            **summaries.finish_payments(summaries.merge_payments(parts)),
        }
    )


@page("/orgs/{org}/suppliers/summary", permission=Permission.TABLES_READ, forwarded=True)
async def suppliers_summary(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's supplier activity per calendar month of its zone (see the module
    docstring)."""
    part_request = _part_request(request, org)
    allow_query(request, {"from", "to"})
    months = month_range(request)
    tables = [supplier_activity_table]

    def compute(held: dict[str, list[int]]) -> Callable[[], Any]:
        rows = org_raw(supplier_activity_table, org, next(iter(held.values())))
        return lambda: summaries.suppliers_part(
            org_rows(supplier_activity_table, org, rows), months
        )

    if part_request:
        return json_response(await local_part(tables, compute, org))
    parts = await gather_parts(
        tables,
        org,
        _path(org, "suppliers/summary"),
        {"from": months[0], "to": months[-1]},
        compute,
    )
    return json_response(
        {
            "organization_id": org,
            "from": months[0],
            "to": months[-1],
            **summaries.finish_suppliers(summaries.merge_suppliers(parts), months),
        }
    )
