"""``POST /orgs/{org}/reports/validate``: a report type's validation checks over a range.

Part of the HTTP layer. The body names what a report request would (``report_type``,
``date_from``, ``date_to``, optional ``data_filters`` and ``configuration``) and nothing else;
the answer is the findings the report would carry, split by severity
(:mod:`stream_app.reports.checks`), computed now from the current data, with nothing rendered,
stored or cached::

    200 {"organization_id", "report_type", "date_from", "date_to", "ok",
         "counts": {"errors", "warnings", "infos"}, "errors": [line], "warnings": [line],
         "infos": [line], "elapsed_ms"}

Permission ``reports:validate`` (analyst and admin: it reads what the report reads, at the
same cost); rate class ``reports``; a venue-scoped token is held to its venues as for a report
request, and its findings are its venues' only (report types that cannot be filtered by venue
refuse it, 400 naming ``$.data_filters.venue_id``). The body is at most
:data:`~stream_app.web.inputs.MAX_BODY_BYTES` (64 KiB; 413 ``too_large`` naming ``$``).
Bad input is a 400 naming the field (``$.report_type``, ``$.date_to``,
``$.data_filters.venue_id``, ``$.output_formats`` when a field of another purpose is sent).

The checks run in one of the worker's long-job slots (:mod:`stream_app.web.aggregation`:
:data:`~stream_app.web.aggregation.LONG_JOBS_CONCURRENT` at once, an organisation at most its
share ``WEDDING_ORG_SLOT_SHARE`` of them, shared with the optimiser and rollup builds, not
with aggregations), so one tenant's validations cannot fill the PostgreSQL pool and the cores
beside everyone's reads and reports. A validation that waited
:data:`~stream_app.web.aggregation.QUEUE_WAIT_S` seconds without one is a 503 ``busy`` with
``Retry-After`` (:data:`RETRY_AFTER_S`).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import fetch_venues
from stream_app.quotas import SlotsBusyError
from stream_app.reports import checks
from stream_app.reports.errors import ReportFailure
from stream_app.reports.types.base import ReportContext, ReportInputError
from stream_app.reports.venue_rows import read_venue_rows
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.web.aggregation import QUEUE_WAIT_S, long_job_slots
from stream_app.web.auth import authenticate
from stream_app.web.errors import ApiError, BusyError
from stream_app.web.inputs import json_object, known_organization, read_body
from stream_app.web.permissions import Permission
from stream_app.web.responses import json_response
from stream_app.web.views import page, scope_report_filters

BODY_FIELDS = frozenset({"report_type", "date_from", "date_to", "data_filters", "configuration"})
"""What a validation body may name (the parts of a report request that decide its content)."""

RETRY_AFTER_S = 5
"""Seconds a validation refused for want of a slot is told to wait (``Retry-After``)."""

_FIELD_PREFIX = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a validation body, limited to :data:`BODY_FIELDS`.

    Raises:
        ApiError: 400 ``invalid_json``, or ``invalid_field`` naming a field outside
            :data:`BODY_FIELDS` (``$.output_formats``) or a body that is not an object.
    """
    body = json_object(raw)
    for name in sorted(body):
        if name not in BODY_FIELDS:
            raise ApiError(
                400,
                "invalid_field",
                f"{name!r} is not a field of a validation (allowed: {sorted(BODY_FIELDS)})",
                field=f"$.{name}",
            )
    return body


def body_request(body: dict[str, Any], org: str, user_id: str) -> ReportRequest:
    """``body`` (already limited to :data:`BODY_FIELDS`) as a :class:`ReportRequest`.

    Raises:
        ApiError: 400 ``invalid_field`` naming the field the schema refuses.
    """
    doc = {
        "schema_version": 1,
        "report_id": f"validate-{uuid.uuid4().hex}",  # never stored: the schema wants one
        "organization_id": org,
        "user_id": user_id,
        "requested_at": datetime.now(UTC).isoformat(),
        "output_formats": ["json"],  # nothing is rendered; the schema wants one
        **body,
    }
    try:
        return decode_event(orjson.dumps(doc), ReportRequest)
    except EventValidationError as exc:
        raise ApiError(400, "invalid_field", exc.reason, field=exc.field) from None


def input_error(exc: ReportInputError) -> ApiError:
    """A builder's refusal as a 400 naming the field its message starts with
    (``data_filters.venue_id: unknown venue(s) ['x']`` → ``$.data_filters.venue_id``)."""
    text = str(exc)
    found = _FIELD_PREFIX.match(text)
    field = f"$.{found.group(1)}" if found else "$"
    reason = text[found.end() :] if found else text
    return ApiError(400, "invalid_field", reason, field=field)


@page(
    "/orgs/{org}/reports/validate",
    method="post",
    permission=Permission.REPORTS_VALIDATE,
    venue_aware=True,
)
async def validate_report(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """A report type's validation findings over a range (module docstring)."""
    principal = authenticate(request, settings.jwt_secret, org)
    body = parse_body(await read_body(request))
    scope_report_filters(principal, body)
    req = body_request(body, org, principal.user_id)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        organization = await known_organization(conn, org)
        venues = await fetch_venues(conn, org)
    ctx = ReportContext(
        request=req,
        organization=organization,
        venues=venues,
        pool=pool,
        read_venue_rows=read_venue_rows,
    )
    try:
        async with long_job_slots().slot(org, QUEUE_WAIT_S):
            answer = await checks.validate(ctx)
    except SlotsBusyError as exc:
        reason = (
            "this organisation already runs its share of long jobs (validations, optimiser"
            " runs, rollup builds; WEDDING_ORG_SLOT_SHARE); retry later"
            if exc.organization
            else "too many long jobs (validations, optimiser runs, rollup builds) running;"
            " retry later"
        )
        own = "organization_id" if exc.organization else None
        raise BusyError(503, "busy", reason, RETRY_AFTER_S, field=own) from None
    except ReportInputError as exc:
        raise input_error(exc) from None
    except ReportFailure as exc:  # a holder of live table rows cannot be reached
        raise ApiError(503, "unavailable", str(exc)) from None
    return json_response(answer.to_json())
