"""HTTP route of the aggregation API.

- ``POST /orgs/{org}/aggregations``: run one aggregation over the organisation's history in
  PostgreSQL (body: see :mod:`stream_app.aggregation`); 200 with the columns and rows.
- ``GET /orgs/{org}/aggregations/datasets``: the allow-list: datasets, their fields with
  types, grains, and the metrics and filter operators each allows.

Errors: 400 naming the JSON path (``$.metrics[2].field``) for a bad dataset, field, operator,
grain or value; 401/403 for the token; 404 for an unknown organisation; 422
``query_timeout`` when the statement timeout cancelled the query; 503 ``busy`` when this
worker already runs :data:`MAX_CONCURRENT` aggregations and one more waited
:data:`QUEUE_WAIT_S` seconds for a slot.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from stream_app.aggregation import (
    AggregationError,
    AggregationTimeoutError,
    aggregate,
    decode_request,
)
from stream_app.aggregation.datasets import describe_datasets
from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.views import page

MAX_CONCURRENT = 2
"""Aggregations one worker runs at once (the pool has 10 connections and the machine few
cores; more would starve report generation and table reads)."""
QUEUE_WAIT_S = 10.0
"""Seconds a request waits for a slot before 503 ``busy``."""
MAX_BODY_BYTES = 64 * 1024

_slots: asyncio.Semaphore | None = None


def _semaphore() -> asyncio.Semaphore:
    global _slots
    if _slots is None:
        _slots = asyncio.Semaphore(MAX_CONCURRENT)
    return _slots


@page("/orgs/{org}/aggregations", method="post")
async def run_aggregation(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Validate and run one aggregation of ``org`` (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"body is over {MAX_BODY_BYTES} bytes", field="$")
    try:
        req = decode_request(raw)
    except AggregationError as exc:
        raise ApiError(400, exc.code, exc.reason, field=exc.field) from None
    slots = _semaphore()
    try:
        await asyncio.wait_for(slots.acquire(), QUEUE_WAIT_S)
    except TimeoutError:
        raise ApiError(503, "busy", "too many aggregations running; retry later") from None
    try:
        pool = await get_pool(settings.postgres_dsn)
        result = await aggregate(pool, org, req)
    except AggregationError as exc:
        raise ApiError(400, exc.code, exc.reason, field=exc.field) from None
    except UnknownOrganizationError as exc:
        raise ApiError(404, "not_found", str(exc), field="organization_id") from None
    except AggregationTimeoutError as exc:
        raise ApiError(422, "query_timeout", str(exc)) from None
    finally:
        slots.release()
    return web.Response(
        body=orjson.dumps(result.to_json()), content_type="application/json", charset="utf-8"
    )


@page("/orgs/{org}/aggregations/datasets")
async def aggregation_datasets(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The datasets and fields an aggregation may name (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    return web.json_response({"datasets": describe_datasets()})
