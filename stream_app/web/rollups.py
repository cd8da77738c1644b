"""HTTP routes of the query optimiser and of rollups (admin: ``rollups:manage``).

- ``POST /orgs/{org}/aggregations/optimize[?runs=N]``: body as ``POST /orgs/{org}/aggregations``;
  answers :func:`stream_app.aggregation.optimizer.optimize` (plan, measured baseline,
  candidates, rule, verdict).
- ``POST /orgs/{org}/rollups``: body a rollup definition
  (:class:`~stream_app.aggregation.rollups.RollupDefinition`; the optimiser's
  ``candidates[i].definition`` as it is); builds it; 201 with its id.
- ``GET /orgs/{org}/rollups``: the organisation's rollups.
- ``DELETE /orgs/{org}/rollups/{rollup_id}``.

The optimiser and rollup builds take the long-job slots (a worker runs at most
:data:`stream_app.web.aggregation.LONG_JOBS_CONCURRENT` of them and report validations at
once, an organisation its share; apart from the aggregation route's slots) and share the
aggregation route's rate-limit class. Errors: 400 naming the field, 404 for an unknown rollup or
organisation, 409 ``too_many_rollups``, 422 ``query_timeout``, 503 ``busy``. Creating and
deleting a rollup are audited (``rollup.created``, ``rollup.deleted``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiohttp import web

from stream_app.aggregation import AggregationError, decode_request
from stream_app.aggregation.optimizer import DEFAULT_RUNS, MAX_RUNS, optimize
from stream_app.aggregation.rollup_store import (
    RollupLimitError,
    RollupNotFoundError,
    create_rollup,
    delete_rollup,
    list_rollups,
)
from stream_app.aggregation.rollups import decode_definition
from stream_app.app import settings
from stream_app.db import audit_events
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError, tenant_transaction
from stream_app.quotas import SlotsBusyError
from stream_app.web.aggregation import QUEUE_WAIT_S, long_job_slots, slots_busy
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError
from stream_app.web.inputs import (
    aggregation_error,
    decode_aggregation,
    organization_not_found,
    read_body,
)
from stream_app.web.numbers import positive_int
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page


@asynccontextmanager
async def _heavy(org: str) -> AsyncIterator[None]:
    """An aggregation slot, and the errors of heavy work as API errors."""
    try:
        async with long_job_slots().slot(org, QUEUE_WAIT_S):
            yield
    except SlotsBusyError as exc:
        raise slots_busy(exc) from None
    except AggregationError as exc:
        raise aggregation_error(exc) from None
    except UnknownOrganizationError as exc:
        raise organization_not_found(exc) from None
    except asyncpg.QueryCanceledError:
        raise ApiError(422, "query_timeout", "a statement ran over its time budget") from None


@page("/orgs/{org}/aggregations/optimize", method="post", permission=Permission.ROLLUPS_MANAGE)
async def optimize_aggregation(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Measure an aggregation and its candidates (see the module docstring)."""
    authenticate(request, settings.jwt_secret, org)
    runs = positive_int(request.query.get("runs", str(DEFAULT_RUNS)), "runs", maximum=MAX_RUNS)
    req = decode_aggregation(decode_request, await read_body(request))
    async with _heavy(org):
        pool = await get_pool(settings.postgres_dsn)
        answer = await optimize(pool, org, req, runs=runs)
    return json_response(answer)


@page("/orgs/{org}/rollups", method="post", permission=Permission.ROLLUPS_MANAGE)
async def create_rollup_route(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Create and build a rollup."""
    principal = authenticate(request, settings.jwt_secret, org)
    rollup = decode_aggregation(decode_definition, await read_body(request))
    async with _heavy(org):
        pool = await get_pool(settings.postgres_dsn)
        async with pool.acquire() as conn, tenant_transaction(conn, org):
            try:
                rollup_id = await create_rollup(conn, org, rollup)
            except RollupLimitError as exc:
                raise ApiError(409, "too_many_rollups", str(exc), field="$") from None
            await audit_events.record(
                conn, org, principal.user_id, "rollup.created", str(rollup_id), rollup.to_json()
            )
    return json_response({"id": rollup_id, "definition": rollup.to_json()}, status=201)


@page("/orgs/{org}/rollups", permission=Permission.ROLLUPS_MANAGE)
async def list_rollups_route(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The organisation's rollups."""
    authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        rollups = await list_rollups(conn, org)
    return json_response({"rollups": [r.to_json() for r in rollups]})


@page("/orgs/{org}/rollups/{rollup_id}", method="delete", permission=Permission.ROLLUPS_MANAGE)
async def delete_rollup_route(
    self: Any, request: web.Request, org: str, rollup_id: str
) -> web.StreamResponse:
    """Delete one rollup."""
    principal = authenticate(request, settings.jwt_secret, org)
    number = positive_int(rollup_id, "rollup_id")
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        try:
            await delete_rollup(conn, org, number)
        except RollupNotFoundError as exc:
            raise ApiError(404, "not_found", str(exc), field="path.rollup_id") from None
        await audit_events.record(conn, org, principal.user_id, "rollup.deleted", str(number))
    return json_response({"id": number, "deleted": True})
