"""HTTP route of the aggregation API.

- ``POST /orgs/{org}/aggregations``: run one aggregation over the organisation's history in
  PostgreSQL (body: see :mod:`stream_app.aggregation`); 200 with the columns and rows.
- ``GET /orgs/{org}/aggregations/datasets``: the allow-list: datasets, their fields with
  types, grains, and the metrics and filter operators each allows.

Errors: 400 naming the JSON path (``$.metrics[2].field``) for a bad dataset, field, operator,
grain or value; 401/403 for the token; 404 for an unknown organisation; 422
``query_timeout`` when the statement timeout cancelled the query; 503 ``busy`` when this
worker already runs :data:`MAX_CONCURRENT` aggregations (or the organisation its share of
them, ``WEDDING_ORG_SLOT_SHARE``) and one more waited :data:`QUEUE_WAIT_S` seconds for a
slot; 403 for a role without ``aggregations:run``, and for a venue-scoped token on a dataset
without ``venue_id`` (otherwise its venues are forced as a filter).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from stream_app.aggregation import (
    AggregationError,
    AggregationTimeoutError,
    aggregate,
    decode_request,
)
from stream_app.aggregation.datasets import DATASETS, describe_datasets
from stream_app.aggregation.request import AggregationRequest, Filter
from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError
from stream_app.quotas import SlotsBusyError, TenantSlots, org_share
from stream_app.web.auth import Principal, authenticate
from stream_app.web.errors import ApiError, BusyError
from stream_app.web.inputs import (
    aggregation_error,
    decode_aggregation,
    organization_not_found,
    read_body,
)
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page

MAX_CONCURRENT = 2
"""Aggregations one worker runs at once (the pool has 10 connections and the machine few
cores; more would starve report generation and table reads)."""
QUEUE_WAIT_S = 10.0
"""Seconds a request waits for a slot before 503 ``busy``."""

BUSY_RETRY_AFTER_S = 5
"""``Retry-After`` (seconds) of a 503 ``busy``: every slot or the organisation's share taken."""


def slots_busy(exc: SlotsBusyError) -> BusyError:
    """The 503 ``busy`` answer (``Retry-After`` :data:`BUSY_RETRY_AFTER_S`) for a request that
    found no aggregation slot: ``field`` is ``organization_id`` when the organisation already
    holds its share, absent when every slot is taken."""
    reason = (
        "this organisation already runs its share of aggregations; retry later"
        if exc.organization
        else "too many aggregations running; retry later"
    )
    own = "organization_id" if exc.organization else None
    return BusyError(503, "busy", reason, BUSY_RETRY_AFTER_S, field=own)


_slots: TenantSlots | None = None


def _tenant_slots() -> TenantSlots:
    """The worker's aggregation slots: :data:`MAX_CONCURRENT`, an organisation's share
    ``WEDDING_ORG_SLOT_SHARE`` of them (one of two by default)."""
    global _slots
    if _slots is None:
        _slots = TenantSlots(MAX_CONCURRENT, org_share(MAX_CONCURRENT, settings.org_slot_share))
    return _slots


LONG_JOBS_CONCURRENT = 3
"""Optimiser runs, rollup builds and report validations one worker runs at once (each may
take tens of seconds of PostgreSQL: up to 60 s for the optimiser). Three, with one per
organisation by the default share: two busy tenants leave one for everyone else (with two, a
second attacker round's two tenants held both and a third's validations were 503 ``busy``)."""
_long_slots: TenantSlots | None = None


def long_job_slots() -> TenantSlots:
    """The worker's slots of long jobs (the optimiser, rollup builds, report validations):
    :data:`LONG_JOBS_CONCURRENT`, an organisation's share ``WEDDING_ORG_SLOT_SHARE`` of them.

    Apart from the aggregation slots: two tenants with one optimiser call each held both
    aggregation slots for their 17-25 s, and every other tenant's aggregations were 503
    ``busy`` after 10 s (an attacker round); now such jobs wait for each other only."""
    global _long_slots
    if _long_slots is None:
        _long_slots = TenantSlots(
            LONG_JOBS_CONCURRENT, org_share(LONG_JOBS_CONCURRENT, settings.org_slot_share)
        )
    return _long_slots


def scope_aggregation(principal: Principal, req: AggregationRequest) -> AggregationRequest:
    """A venue-scoped token's request with a ``venue_id in <scope>`` filter added.

    Raises:
        ApiError: 403 naming ``$.dataset`` when the dataset has no ``venue_id`` field (its
            rows cannot be limited to venues).
    """
    if principal.venues is None:
        return req
    dataset = DATASETS.get(req.dataset)
    if dataset is None:
        return req  # unknown dataset: the aggregation's own validation answers 400
    if "venue_id" not in dataset.fields:
        raise ApiError(
            403,
            "forbidden",
            f"dataset {req.dataset!r} has no venue_id; a venue-scoped token cannot read it",
            field="$.dataset",
        )
    scope = Filter("venue_id", "in", sorted(principal.venues))
    return msgspec.structs.replace(req, filters=[*req.filters, scope])


@page(
    "/orgs/{org}/aggregations",
    method="post",
    permission=Permission.AGGREGATIONS_RUN,
    venue_aware=True,
)
async def run_aggregation(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Validate and run one aggregation of ``org`` (see the module docstring)."""
    principal = authenticate(request, settings.jwt_secret, org)
    req = decode_aggregation(decode_request, await read_body(request))
    req = scope_aggregation(principal, req)
    try:
        async with _tenant_slots().slot(org, QUEUE_WAIT_S):
            pool = await get_pool(settings.postgres_dsn)
            result = await aggregate(pool, org, req)
    except SlotsBusyError as exc:
        raise slots_busy(exc) from None
    except AggregationError as exc:
        raise aggregation_error(exc) from None
    except UnknownOrganizationError as exc:
        raise organization_not_found(exc) from None
    except AggregationTimeoutError as exc:
        raise ApiError(422, "query_timeout", str(exc)) from None
    return json_response(result.to_json())  # a sum past 64 bits too (not orjson's 500)


@page("/orgs/{org}/aggregations/datasets", permission=Permission.AGGREGATIONS_RUN, venue_aware=True)
async def aggregation_datasets(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The datasets and fields an aggregation may name (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    return json_response({"datasets": describe_datasets()})
