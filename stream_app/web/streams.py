"""HTTP reads of the payments, client-interactions and supplier-activity tables.

- ``GET /orgs/{org}/bookings/{booking}/payments[?from=YYYY-MM&to=YYYY-MM]``: a booking's
  all-time payment totals (``total``) and, with ``from``/``to``, its rows per UTC month with
  the split by supplier (``months``); see :mod:`stream_app.tables.payments`.
- ``GET /orgs/{org}/clients/{client}/interactions``: a client's interaction totals, with the
  average rating (``average_rating_milli``: thousandths, rounded down) and the NPS
  (``nps_score``: −100..100, rounded toward zero) derived at read time;
  see :mod:`stream_app.tables.interactions`.
- ``GET /orgs/{org}/suppliers/{supplier}/activity?from=YYYY-MM&to=YYYY-MM``: a supplier's
  activity per UTC month; see :mod:`stream_app.tables.suppliers`.

A missing row reads as zeros. Every route needs a bearer token of ``org``.

Local reads only: an entity's rows live in the partition of its message key
``organization_id/<entity>`` (computed as in :mod:`stream_app.web.routing`); a worker that does
not hold that partition of the table's changelog answers **503** ``not_owner`` naming the
owner's URL when known (no forwarding yet, unlike the venue metrics), and 503 ``recovering``
while it restores its tables. With a single worker every read is local.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream_app.agents.interactions import client_interactions_table
from stream_app.agents.payments import booking_payments_table
from stream_app.agents.suppliers import supplier_activity_table
from stream_app.app import app, settings
from stream_app.partitioning import partition_for
from stream_app.tables import interactions as interactions_tables
from stream_app.tables import payments as payments_tables
from stream_app.tables import suppliers as suppliers_tables
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.views import page, period_labels


def require_local(table: Any, organization_id: str, entity: str) -> None:
    """Return when this worker holds the partition of ``organization_id/entity`` of ``table``.

    Raises:
        ApiError: 503 ``recovering`` while tables are restored or rebalanced; 503 ``not_owner``
            when another worker (or none) holds the partition.
    """
    if getattr(app, "in_recovery", False) or getattr(app, "rebalancing", False):
        raise ApiError(503, "recovering", "this worker is restoring its tables; retry")
    partition = partition_for(f"{organization_id}/{entity}".encode(), settings.topic_partitions)
    changelog = table.changelog_topic.get_topic_name()
    if any(
        tp.topic == changelog and tp.partition == partition
        for tp in app.assignor.assigned_actives()
    ):
        return
    owner = next(
        (
            str(url).rstrip("/")
            for url, topics in app.assignor.table_metadata(changelog).items()
            if partition in topics.get(changelog, [])
        ),
        None,
    )
    where = f"ask {owner}" if owner else "no worker holds it right now"
    raise ApiError(503, "not_owner", f"partition {partition} is not on this worker; {where}")


def _toward_zero(numerator: int, denominator: int) -> int:
    """``numerator ÷ denominator`` rounded toward zero, in integers (``denominator`` > 0)."""
    q = abs(numerator) // denominator
    return q if numerator >= 0 else -q


def _values(table: Any, key: str) -> dict[str, Any] | None:
    row = table.get(key)
    return None if row is None else dict(row["values"])


def _months(request: web.Request) -> list[str]:
    q = request.query
    if "from" not in q or "to" not in q:
        raise ApiError(
            400,
            "missing_field",
            "query parameters 'from' and 'to' are required",
            field="from" if "from" not in q else "to",
        )
    return period_labels("month", q["from"], q["to"])


@page("/orgs/{org}/bookings/{booking}/payments")
async def booking_payments(
    self: Any, request: web.Request, org: str, booking: str
) -> web.StreamResponse:
    """A booking's payment totals (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    months = _months(request) if "from" in request.query or "to" in request.query else []
    require_local(booking_payments_table, org, booking)
    total = _values(booking_payments_table, payments_tables.total_key(org, booking))
    return web.json_response(
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


@page("/orgs/{org}/clients/{client}/interactions")
async def client_interactions(
    self: Any, request: web.Request, org: str, client: str
) -> web.StreamResponse:
    """A client's interaction totals (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    require_local(client_interactions_table, org, client)
    values = (
        _values(client_interactions_table, interactions_tables.client_key(org, client))
        or interactions_tables.empty()
    )
    values.pop("early_responses", None)
    ratings: dict[str, int] = values["ratings"]
    n_ratings = sum(ratings.values())
    nps: dict[str, int] = values["nps"]
    answers = sum(nps.values())
    promoters = sum(n for s, n in nps.items() if int(s) >= 9)
    detractors = sum(n for s, n in nps.items() if int(s) <= 6)
    return web.json_response(
        {
            "organization_id": org,
            "client_id": client,
            **values,
            "average_rating_milli": (
                sum(int(s) * n for s, n in ratings.items()) * 1000 // n_ratings
                if n_ratings
                else None
            ),
            "nps_score": _toward_zero(100 * (promoters - detractors), answers) if answers else None,
        }
    )


@page("/orgs/{org}/suppliers/{supplier}/activity")
async def supplier_activity(
    self: Any, request: web.Request, org: str, supplier: str
) -> web.StreamResponse:
    """A supplier's activity per UTC month (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    months = _months(request)
    require_local(supplier_activity_table, org, supplier)
    return web.json_response(
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
