"""HTTP reads of the payments, client-interactions and supplier-activity tables.

- ``GET /orgs/{org}/bookings/{booking}/payments[?from=YYYY-MM&to=YYYY-MM]``: a booking's
  all-time payment totals (``total``) and, with ``from``/``to``, its rows per calendar month
  (the organisation's zone) with the split by supplier (``months``); see
  :mod:`stream_app.tables.payments`.
- ``GET /orgs/{org}/clients/{client}/interactions``: a client's interaction totals (inquiries,
  responses, first response, bookings, ``booked_at``, ``converted_at``, ``days_to_book``,
  ``direct_bookings``, ratings, NPS answers), with the average rating
  (``average_rating_milli``: thousandths, rounded down) and the NPS (``nps_score``:
  −100..100, rounded toward zero) derived at read time;
  see :mod:`stream_app.tables.interactions`.
- ``GET /orgs/{org}/suppliers/{supplier}/activity?from=YYYY-MM&to=YYYY-MM``: a supplier's
  activity per calendar month (the organisation's zone); see
  :mod:`stream_app.tables.suppliers`.

A missing row reads as zeros. Every route needs a bearer token of ``org``.

Answered by any worker: an entity's rows live in the partition of its message key
``organization_id/<entity>`` of the table's changelog; a worker that does not hold that
partition forwards the request once, with an internal token, to the worker that does (as the
venue metrics reads, :mod:`stream_app.queries.routing`) and answers with its body. **503**
``recovering`` only when nobody can answer: this worker or the owner is restoring its tables
(the owner is retried for a few seconds first), or no worker holds the partition (a rebalance
is under way). With a single worker every read is local.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream_app.app import settings
from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.partitions import partition_for
from stream_app.queries.routing import changelog_owner, remote_json
from stream_app.tables import interactions as interactions_tables
from stream_app.tables import payments as payments_tables
from stream_app.tables import suppliers as suppliers_tables
from stream_app.topology import (
    booking_payments_table,
    client_interactions_table,
    supplier_activity_table,
)
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.inputs import allow_query, require_query
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import forwarded_by_a_worker, page, period_labels


async def forward_if_remote(
    request: web.Request, table: Any, organization_id: str, entity: str
) -> web.StreamResponse | None:
    """Answer from the owner of ``organization_id/entity``'s partition of ``table``, if remote.

    Returns:
        None when this worker holds the partition (the caller reads its own table), else the
        owner's JSON answer to the same path and query.

    Raises:
        ApiError: 503 ``recovering`` when the owner does not answer, or ownership is moving.
        QueryUnavailableError: ``recovering`` when this worker restores its tables or no
            worker holds the partition (answered as a 503 of that code).
    """
    partition = partition_for(f"{organization_id}/{entity}".encode(), settings.topic_partitions)
    owner = changelog_owner(table.changelog_topic.get_topic_name(), partition)
    if owner is None:
        return None
    if forwarded_by_a_worker(request, organization_id):
        # the sender thought we own it, we think it does: ownership is moving
        raise ApiError(503, "recovering", "partition ownership is moving; retry")
    try:
        body = await remote_json(
            owner, request.rel_url.raw_path, dict(request.query), organization_id
        )
    except QueryUnavailableError as exc:
        # the owner did not answer after the retries: nobody can answer right now
        raise ApiError(503, "recovering", f"{exc.code}: {exc.reason}; retry") from None
    return json_response(body)


def _values(table: Any, key: str) -> dict[str, Any] | None:
    row = table.get(key)
    return None if row is None else dict(row["values"])


_RANGE = frozenset({"from", "to"})
"""The query parameters of the month-range reads."""


def _months(request: web.Request) -> list[str]:
    require_query(request, ("from", "to"), "query parameters 'from' and 'to' are required")
    return period_labels("month", request.query["from"], request.query["to"])


@page("/orgs/{org}/bookings/{booking}/payments", permission=Permission.TABLES_READ, forwarded=True)
async def booking_payments(
    self: Any, request: web.Request, org: str, booking: str
) -> web.StreamResponse:
    """A booking's payment totals (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    allow_query(request, _RANGE)
    months = _months(request) if "from" in request.query or "to" in request.query else []
    if (fwd := await forward_if_remote(request, booking_payments_table, org, booking)) is not None:
        return fwd
    total = _values(booking_payments_table, payments_tables.total_key(org, booking))
    return json_response(
        {
            "organization_id": org,
            "booking_id": booking,
            "total": total or payments_tables.empty_total(),
            "months": [
                {
                    "period": m,
                    **(
                        _values(booking_payments_table, payments_tables.month_key(org, booking, m))
                        or {"by_supplier": {}}
                    ),
                }
                for m in months
            ],
        }
    )


@page(
    "/orgs/{org}/clients/{client}/interactions", permission=Permission.TABLES_READ, forwarded=True
)
async def client_interactions(
    self: Any, request: web.Request, org: str, client: str
) -> web.StreamResponse:
    """A client's interaction totals (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    allow_query(request, frozenset())
    if (
        fwd := await forward_if_remote(request, client_interactions_table, org, client)
    ) is not None:
        return fwd
    return json_response(client_interactions_body(org, client))


def client_interactions_body(org: str, client: str) -> dict[str, Any]:
    """The answer of ``GET /orgs/{org}/clients/{client}/interactions`` from this worker's
    table (the caller checked that this worker holds the client's partition)."""
    values = interactions_tables.with_defaults(
        _values(client_interactions_table, interactions_tables.client_key(org, client))
    )
    values.pop("early_responses", None)
    values.pop("early_bookings", None)
    return {
        "organization_id": org,
        "client_id": client,
        **values,
        "average_rating_milli": interactions_tables.average_rating_milli(values["ratings"]),
        "nps_score": interactions_tables.nps_figures(values["nps"])[3],
    }


@page(
    "/orgs/{org}/suppliers/{supplier}/activity", permission=Permission.TABLES_READ, forwarded=True
)
async def supplier_activity(
    self: Any, request: web.Request, org: str, supplier: str
) -> web.StreamResponse:
    """A supplier's activity per calendar month of the organisation's zone (see the module
    docstring)."""
    authenticate(request, settings.jwt_secret, org)
    allow_query(request, _RANGE)
    months = _months(request)
    if (
        fwd := await forward_if_remote(request, supplier_activity_table, org, supplier)
    ) is not None:
        return fwd
    return json_response(
        {
            "organization_id": org,
            "supplier_id": supplier,
            "months": [
                {
                    "period": m,
                    **(
                        _values(
                            supplier_activity_table, suppliers_tables.month_key(org, supplier, m)
                        )
                        or suppliers_tables.empty()
                    ),
                }
                for m in months
            ],
        }
    )
