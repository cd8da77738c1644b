"""The HTTP API's OpenAPI 3.1 description, served at ``GET /openapi.json`` (public).

Part of the HTTP layer. The document is built from the code itself:

- the routes and their permissions: :data:`stream_app.web.views.ROUTE_SPECS` (what every
  ``@page`` declared), filtered to the routes this worker registered;
- request bodies and the live-update events: the msgspec structs the handlers decode with
  (``msgspec.json.schema_components``): :class:`~stream_app.schemas.reports.ReportRequest`
  (less the fields the server sets), :class:`~stream_app.aggregation.request.AggregationRequest`,
  the schedule's delivery targets, retry policy and recipient filters,
  :mod:`stream_app.schemas.updates`;
- the error body of :class:`stream_app.web.errors.ApiError`;
- what the structs cannot say (summaries, query parameters, success statuses and the shape of
  answers built by hand) is the table :data:`OPERATIONS` beside them.
  ``tests/web/test_openapi.py`` checks that the document and the live router list the same
  routes, validates the document (``openapi-spec-validator``) and runs Schemathesis against a
  worker.

Authentication: ``bearer`` (an HS256 JWT, ``Authorization: Bearer``), and for the live updates
also ``access_token`` in the query (``EventSource`` cannot set headers). Each operation names
its permission in ``x-permission`` (:mod:`stream_app.web.permissions`).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from stream_app.aggregation.request import AggregationRequest
from stream_app.aggregation.rollups import RollupDefinition
from stream_app.app import app
from stream_app.delivery.targets import RetryPolicy
from stream_app.schedules.model import RecipientFilter
from stream_app.schemas.ids import ID_MAX_LENGTH, ID_PATTERN
from stream_app.schemas.reports import OUTPUT_FORMATS, REPORT_TYPES, ReportRequest
from stream_app.schemas.updates import GenericMetricUpdate, MetricUpdate, ReportStatus
from stream_app.web.guard import RouteSpec
from stream_app.web.permissions import PUBLIC, Permission
from stream_app.web.views import ROUTE_SPECS, page

Schema = dict[str, Any]
OBJECT: Schema = {"type": "object"}
SERVER_SET = ("schema_version", "organization_id", "user_id", "requested_at")
"""Fields of :class:`ReportRequest` the server sets; a request body naming one gets 400."""
ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429, 503)
"""The error statuses an operation may answer (each with the :data:`ERROR` body)."""
_ERRORS_DOC = {
    400: "Bad input: `field` names the parameter or JSON path, `reason` says why.",
    401: "No token, or a malformed, expired or revoked one.",
    403: "Another organisation's token, a role without the permission, or outside the venue scope.",
    404: "No such entity in this organisation.",
    409: "Conflict (an id already in use, a report already final).",
    413: "Body too large.",
    422: "Valid but not answerable (an aggregation over its time budget).",
    429: "Rate limit or live-stream limit reached (`Retry-After`).",
    503: "A backing service or the partition's owner is unavailable; retry.",
}


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Operation:
    """What the structs cannot say about one route.

    Attributes:
        summary: one line.
        success: the success status.
        response: the success body's schema (JSON unless ``media`` says otherwise).
        media: the success body's media types.
        body: the request body's schema (JSON), or None.
        query: the query parameters.
    """

    summary: str
    success: int = 200
    response: Schema = field(default_factory=lambda: OBJECT)
    media: tuple[str, ...] = ("application/json",)
    body: Schema | None = None
    query: tuple[Param, ...] = ()
    extra_statuses: tuple[int, ...] = ()


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(required: dict[str, Schema], **optional: Schema) -> Schema:
    """An object with ``required`` properties (and ``optional`` ones)."""
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **optional},
    }


STR: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
LIST: Schema = {"type": "array", "items": OBJECT}
LINKS_REVOKED = {"links_revoked_before": TIME}


MONTH = {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$"}
_FROM_TO = (
    Param("from", {"type": "string"}, True, "first period (YYYY-MM, or YYYY-MM-DD for day)"),
    Param("to", {"type": "string"}, True, "last period, inclusive"),
    Param("grain", {"type": "string"}, False, "day, month or an event_* window grain"),
)
_MONTHS = (Param("from", MONTH, True), Param("to", MONTH, True))
_OPT_MONTHS = (Param("from", MONTH), Param("to", MONTH))
FILES = (
    "text/csv",
    "application/json",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
)
VALIDATION_BODY: Schema = {
    "type": "object",
    "required": ["report_type", "date_from", "date_to"],
    "additionalProperties": False,
    "properties": {
        "report_type": {"type": "string", "enum": sorted(REPORT_TYPES)},
        "date_from": {"type": "string", "format": "date"},
        "date_to": {"type": "string", "format": "date"},
        "data_filters": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "configuration": OBJECT,
    },
}
"""The body of ``POST /orgs/{org}/reports/validate`` (:mod:`stream_app.web.validate`)."""
SCHEDULE_BODY: Schema = {
    "type": "object",
    "required": ["report_type", "date_range", "output_formats", "cron", "delivery"],
    "properties": {
        "schedule_id": STR,
        "report_type": STR,
        "date_range": STR,
        "output_formats": {"type": "array", "items": STR},
        "cron": STR,
        "time_zone": STR,
        "delivery": {
            "type": "object",
            "required": ["method"],
            "properties": {"method": {"enum": ["email", "webhook", "sftp", "api"]}},
        },
        "retry": _ref("RetryPolicy"),
        "recipient_filters": {"type": "array", "items": _ref("RecipientFilter")},
        "expires_at": {"type": "string", "format": "date-time"},
        "paused": {"type": "boolean"},
        "skip_if_empty": {"type": "boolean"},
        "min_interval_seconds": {"type": "integer"},
        "priority": {"enum": ["low", "normal", "high", "critical"]},
    },
}
SCHEDULE_ANSWER: Schema = _answer(
    {
        "schedule_id": STR,
        "organization_id": STR,
        "created_by": STR,
        "report_type": STR,
        "date_range": STR,
        "output_formats": {"type": "array", "items": STR},
        "cron": STR,
        "time_zone": STR,
        "delivery": _answer({"method": {"enum": ["email", "webhook", "sftp", "api"]}}),
        "retry": OBJECT,
        "paused": {"type": "boolean"},
        "next_fire_time": {"type": ["string", "null"]},
        "upcoming_fire_times": {"type": "array", "items": STR},
    },
    expires_at={"type": ["string", "null"]},
    last_fire_time={"type": ["string", "null"]},
)
"""A schedule as the API shows it (``stream_app.web.schedules.schedule_to_json``; no secrets)."""
REPORT_STATUS_ANSWER: Schema = _answer(
    {
        "report_id": STR,
        "organization_id": STR,
        "report_type": STR,
        "status": {"enum": ["queued", "processing", "completed", "failed", "cancelled"]},
        "artifacts": {
            "type": "array",
            "items": _answer(
                {"format": STR, "download_url": STR, "sha256": {"type": ["string", "null"]}},
                size_bytes={"type": ["integer", "null"]},
                rows={"type": ["integer", "null"]},
            ),
        },
    },
    error={"type": ["string", "null"]},
    delivery_links={"type": "array"},
    delivery={"type": ["object", "null"]},
)
SSE_DOC = (
    "Server-Sent Events: `event:` is the message's `kind` (`metric_update`, "
    "`generic_metric_update`, `report_status`; the first is `ready`), `data:` its JSON body "
    "as published on `realtime-metrics-updates` (schemas `MetricUpdate`, `GenericMetricUpdate`, "
    "`ReportStatus`; fields not listed there are passed through), `id:` an opaque id of the "
    "stream position (sealed for the organisation; different at each send) to resume from with "
    "`Last-Event-ID`; an id that does not open on this organisation's stream is a 400 naming "
    "the field. A resume further back than `WEDDING_UPDATES_REPLAY_MAX` messages of a "
    "partition starts with `event: gap` (`data:` `{kind, max_replay, detail}`, no offset): "
    "updates were missed; re-read the figures. 429 `too_many_replays` when the organisation's "
    "resumes (`WEDDING_UPDATES_MAX_REPLAYS`) are all reading back on this worker."
)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/health"): Operation(
        "Liveness and the input partitions this worker owns.",
        response={
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string"},
                "bookings_partitions": {"type": "array", "items": {"type": "integer"}},
            },
        },
    ),
    ("GET", "/livez"): Operation(
        "Liveness: 200 while the worker's event loop answers (also while it restores tables).",
        response={
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["alive"]}},
        },
    ),
    ("GET", "/readyz"): Operation(
        "Readiness: 200 when the tables are restored and the Kafka broker and PostgreSQL "
        "answer; 503 otherwise, with every check's outcome.",
        response={
            "type": "object",
            "required": ["ready", "checks"],
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["ok", "detail"],
                        "properties": {
                            "ok": {"type": "boolean"},
                            "detail": {"type": "string"},
                        },
                    },
                },
            },
        },
    ),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics.", response={"type": "string"}, media=("text/plain",)
    ),
    ("GET", "/openapi.json"): Operation("This document."),
    ("GET", "/dashboard"): Operation(
        "The live dashboard page (HTML; it asks for a token).",
        response={"type": "string"},
        media=("text/html",),
    ),
    ("GET", "/dashboard/{asset}"): Operation(
        "A file of the dashboard page (its script, style sheet, vendored Chart.js).",
        response={"type": "string"},
        media=("text/javascript", "text/css"),
    ),
    ("GET", "/orgs/{org}/updates"): Operation(
        "Live updates of the organisation (Server-Sent Events).",
        response={"type": "string", "description": SSE_DOC},
        media=("text/event-stream",),
        query=(
            Param("metric", {"type": "string"}, description="comma-separated metric names"),
            Param("venue", {"type": "string"}, description="comma-separated venue ids"),
            Param("last_event_id", {"type": "string"}, description="as Last-Event-ID"),
        ),
    ),
    ("GET", "/orgs/{org}/venues/{venue}/metrics"): Operation(
        "A venue's booking totals per period.",
        response={
            "type": "object",
            "required": ["organization_id", "venue_id", "grain", "periods"],
            "properties": {"periods": {"type": "array", "items": OBJECT}},
        },
        query=_FROM_TO,
    ),
    ("GET", "/orgs/{org}/venues/{venue}/occupancy"): Operation(
        "A venue's occupancy per day or month.", query=_FROM_TO
    ),
    ("POST", "/orgs/{org}/reports"): Operation(
        "Request a report.",
        success=202,
        body=_ref("ReportRequestBody"),
        response={
            "type": "object",
            "required": ["report_id", "status", "status_url"],
            "properties": {
                "report_id": {"type": "string"},
                "status": {"const": "queued"},
                "status_url": {"type": "string"},
            },
        },
    ),
    ("POST", "/orgs/{org}/reports/validate"): Operation(
        "A report type's validation findings over a range (nothing rendered or stored).",
        body=VALIDATION_BODY,
        response=_answer(
            {
                "organization_id": STR,
                "report_type": STR,
                "date_from": STR,
                "date_to": STR,
                "ok": {"type": "boolean"},
                "counts": _answer(
                    {
                        "errors": {"type": "integer"},
                        "warnings": {"type": "integer"},
                        "infos": {"type": "integer"},
                    }
                ),
                "errors": {"type": "array", "items": STR},
                "warnings": {"type": "array", "items": STR},
                "infos": {"type": "array", "items": STR},
                "elapsed_ms": {"type": "number"},
            }
        ),
    ),
    ("GET", "/orgs/{org}/reports/{report_id}"): Operation(
        "A report's status, files and delivery links.", response=REPORT_STATUS_ANSWER
    ),
    ("POST", "/orgs/{org}/reports/{report_id}/cancel"): Operation(
        "Cancel a report.",
        response=_answer({"report_id": STR, "status": {"const": "cancelled"}}),
    ),
    ("GET", "/orgs/{org}/reports/{report_id}/files/{fmt}"): Operation(
        "Download a completed report's file.",
        response={"type": "string", "contentMediaType": "application/octet-stream"},
        media=FILES,
    ),
    ("POST", "/orgs/{org}/reports/{report_id}/links/revoke"): Operation(
        "Revoke a report's download links.",
        response=_answer({"report_id": STR, **LINKS_REVOKED}),
    ),
    ("POST", "/orgs/{org}/aggregations"): Operation(
        "Run an aggregation over the history.", body=_ref("AggregationRequest")
    ),
    ("POST", "/orgs/{org}/aggregations/optimize"): Operation(
        "Measure an aggregation and try rollup, index and rewrite candidates (admin).",
        body=_ref("AggregationRequest"),
        response=_answer(
            {"baseline": OBJECT, "candidates": LIST, "rule": STR, "verdict": STR, "plan": OBJECT}
        ),
        query=(Param("runs", {"type": "integer"}, description="measured repetitions, 1..9"),),
    ),
    ("POST", "/orgs/{org}/rollups"): Operation(
        "Create and build a rollup (admin).",
        success=201,
        body=_ref("RollupDefinition"),
        response=_answer({"id": {"type": "integer"}, "definition": OBJECT}),
    ),
    ("GET", "/orgs/{org}/rollups"): Operation(
        "The organisation's rollups (admin).", response=_answer({"rollups": LIST})
    ),
    ("DELETE", "/orgs/{org}/rollups/{rollup_id}"): Operation(
        "Delete a rollup (admin).",
        response=_answer({"id": {"type": "integer"}, "deleted": {"const": True}}),
    ),
    ("GET", "/orgs/{org}/aggregations/datasets"): Operation(
        "The datasets and their fields.", response=_answer({"datasets": LIST})
    ),
    ("GET", "/orgs/{org}/audit"): Operation(
        "The audit log.",
        response=_answer(
            {
                "organization_id": STR,
                "events": {
                    "type": "array",
                    "items": _answer(
                        {
                            "seq": {"type": "integer"},
                            "action": STR,
                            "actor": STR,
                            "at": STR,
                            "row_hash": STR,
                        }
                    ),
                },
                "next_after_seq": {"type": ["integer", "null"]},
            }
        ),
        query=(
            Param("after_seq", {"type": "integer", "minimum": 0}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
    ),
    ("GET", "/orgs/{org}/query-stats"): Operation(
        "The organisation's slowest recent queries (admin).",
        response=_answer(
            {
                "organization_id": STR,
                "window_days": {"type": "integer"},
                "slow_query_s": {"type": "number"},
                "queries": {
                    "type": "array",
                    "items": _answer(
                        {
                            "kind": {"enum": ["aggregation", "report"]},
                            "dataset": STR,
                            "query_id": STR,
                            "ms": {"type": "number"},
                            "rows": {"type": "integer"},
                            "slow": {"type": "boolean"},
                            "at": STR,
                        }
                    ),
                },
            }
        ),
        query=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 200}),),
    ),
    ("POST", "/orgs/{org}/gdpr/export"): Operation(
        "GDPR export of a client's data.",
        body={
            "type": "object",
            "required": ["client_id"],
            "properties": {"client_id": {"type": "string"}, "kind": {"type": "string"}},
        },
    ),
    ("POST", "/orgs/{org}/gdpr/erase"): Operation(
        "GDPR erasure of a client's data (202 while it completes).",
        body={
            "type": "object",
            "required": ["client_id"],
            "properties": {"client_id": {"type": "string"}},
        },
        extra_statuses=(202,),
    ),
    ("GET", "/orgs/{org}/retention"): Operation("The retention rule."),
    ("PUT", "/orgs/{org}/retention"): Operation("Set the retention rule.", body=OBJECT),
    ("POST", "/orgs/{org}/schedules"): Operation(
        "Create a schedule.", success=201, body=SCHEDULE_BODY, response=SCHEDULE_ANSWER
    ),
    ("GET", "/orgs/{org}/schedules"): Operation(
        "The schedules.",
        response=_answer({"schedules": {"type": "array", "items": SCHEDULE_ANSWER}}),
    ),
    ("GET", "/orgs/{org}/schedules/preview"): Operation(
        "The next fire times a schedule with this cron expression would run.",
        response=_answer(
            {
                "time_zone": {"type": "string"},
                "min_interval_seconds": {"type": "integer"},
                "fire_times": {"type": "array", "items": TIME},
                "complete": {"type": "boolean"},
            }
        ),
        query=(
            Param("cron", {"type": "string"}, True),
            Param("time_zone", {"type": "string"}),
            Param("count", {"type": "integer", "minimum": 1, "maximum": 1000}),
            Param("min_interval_seconds", {"type": "integer", "minimum": 0}),
        ),
    ),
    ("GET", "/orgs/{org}/schedules/{schedule_id}"): Operation(
        "A schedule.", response=SCHEDULE_ANSWER
    ),
    ("PUT", "/orgs/{org}/schedules/{schedule_id}"): Operation(
        "Replace a schedule.", body=SCHEDULE_BODY, response=SCHEDULE_ANSWER
    ),
    ("DELETE", "/orgs/{org}/schedules/{schedule_id}"): Operation(
        "Delete a schedule.",
        response=_answer({"schedule_id": STR, "deleted": {"const": True}}),
    ),
    ("POST", "/orgs/{org}/schedules/{schedule_id}/pause"): Operation(
        "Pause a schedule.", response=SCHEDULE_ANSWER
    ),
    ("POST", "/orgs/{org}/schedules/{schedule_id}/resume"): Operation(
        "Resume a schedule.", response=SCHEDULE_ANSWER
    ),
    ("GET", "/orgs/{org}/schedules/{schedule_id}/runs"): Operation(
        "A schedule's runs and deliveries."
    ),
    ("POST", "/orgs/{org}/schedules/{schedule_id}/links/revoke"): Operation(
        "Revoke a schedule's download links.",
        response=_answer({"schedule_id": STR, **LINKS_REVOKED}),
    ),
    ("GET", "/downloads/{token}"): Operation(
        "A file by its signed link (the link is the credential).",
        response={"type": "string", "contentMediaType": "application/octet-stream"},
        media=FILES,
    ),
    ("GET", "/orgs/{org}/bookings/{booking}/payments"): Operation(
        "A booking's payments.", query=_OPT_MONTHS
    ),
    ("GET", "/orgs/{org}/clients/{client}/interactions"): Operation("A client's interactions."),
    ("GET", "/orgs/{org}/suppliers/{supplier}/activity"): Operation(
        "A supplier's activity.", query=_OPT_MONTHS
    ),
    ("GET", "/orgs/{org}/interactions/summary"): Operation(
        "Interactions of the organisation per month.",
        query=_MONTHS,  # (a worker's part takes ``zone`` too: not for clients)
    ),
    ("GET", "/orgs/{org}/payments/summary"): Operation(
        "Payments of the organisation per currency."
    ),
    ("GET", "/orgs/{org}/suppliers/summary"): Operation(
        "Supplier activity of the organisation per month.", query=_MONTHS
    ),
    ("POST", "/orgs/{org}/tokens/revoke"): Operation(
        "Revoke a token (jti) or every token issued before a time.",
        body={
            "type": "object",
            "properties": {"jti": {"type": "string"}, "before": {"type": "string"}},
        },
        response=_answer(
            {"revoked": OBJECT, "recorded_tokens": {"type": "integer"}},
            effective_within_s={"type": "number"},
            warning=STR,
        ),
    ),
    ("GET", "/debug/consumer"): Operation("The worker's consumer state (WEDDING_DEBUG=1 only)."),
}

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "reason", "field"],
            "properties": {
                "code": {"type": "string", "description": "stable machine code"},
                "reason": {"type": "string", "description": "human-readable cause"},
                "field": {
                    "type": ["string", "null"],
                    "description": "the offending parameter or path (null: no one field)",
                },
                "dependency": {
                    "type": "string",
                    "description": "503 dependency_unavailable: postgresql, kafka or redis",
                },
                "retry_after_s": {
                    "type": "integer",
                    "description": "503 dependency_unavailable: seconds to wait (Retry-After)",
                },
            },
        }
    },
}
"""The body of every error (:meth:`stream_app.web.errors.ApiError.response`)."""


def components() -> dict[str, Schema]:
    """The schemas of the request bodies and events, from their msgspec structs."""
    _, schemas = msgspec.json.schema_components(
        [
            ReportRequest,
            AggregationRequest,
            RollupDefinition,
            RetryPolicy,
            RecipientFilter,
            MetricUpdate,
            GenericMetricUpdate,
            ReportStatus,
        ],
        ref_template="#/components/schemas/{name}",
    )
    body = copy.deepcopy(schemas["ReportRequest"])
    body["title"] = "ReportRequestBody"
    body["description"] = (
        "A report request as POSTed: ReportRequest less the fields the server sets."
    )
    for name in SERVER_SET:
        body["properties"].pop(name, None)
    body["required"] = [r for r in body.get("required", []) if r not in SERVER_SET]
    body["required"] = [r for r in body["required"] if r != "report_id"]  # the server picks one
    body["properties"]["report_type"] = {"enum": sorted(REPORT_TYPES)}
    body["properties"]["output_formats"] = {
        "type": "array",
        "minItems": 1,
        "uniqueItems": True,
        "items": {"enum": sorted(OUTPUT_FORMATS)},
    }
    schemas["ReportRequestBody"] = body
    schemas["Error"] = ERROR
    return schemas


def _path_params(path: str) -> list[Schema]:
    params = []
    for name in re.findall(r"{(\w+)}", path):
        schema: Schema = {"type": "string"}
        if name not in ("token", "fmt"):
            schema = {
                "type": "string",
                "pattern": ID_PATTERN,
                "minLength": 1,
                "maxLength": ID_MAX_LENGTH,
            }
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return params


def _operation(method: str, path: str, spec: RouteSpec, op: Operation) -> Schema:
    out: Schema = {
        "operationId": f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}",
        "summary": op.summary,
        "parameters": _path_params(path)
        + [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in op.query
        ],
        "responses": {
            str(op.success): {
                "description": "success",
                "content": {m: {"schema": op.response} for m in op.media},
            },
            **{
                str(s): {
                    "description": _ERRORS_DOC.get(s, "see the body"),
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for s in ERROR_STATUSES
            },
            **{
                str(s): {
                    "description": "accepted",
                    "content": {"application/json": {"schema": OBJECT}},
                }
                for s in op.extra_statuses
            },
        },
    }
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    if spec.access is PUBLIC:
        out["security"] = []
    else:
        access = spec.access
        out["x-permission"] = access.value if isinstance(access, Permission) else str(access)
        out["security"] = (
            [{"bearer": []}, {"query_token": []}] if spec.streaming else [{"bearer": []}]
        )
    return out


def build_document(routes: Mapping[tuple[str, str], RouteSpec]) -> Schema:
    """The OpenAPI 3.1 document of ``routes`` (``(METHOD, path)`` → what it declared).

    Raises:
        KeyError: a route without an entry in :data:`OPERATIONS`.
    """
    paths: dict[str, Schema] = {}
    for (method, path), spec in sorted(routes.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        paths.setdefault(path, {})[method.lower()] = _operation(
            method, path, spec, OPERATIONS[(method, path)]
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wedding reporting engine",
            "version": "1",
            "description": "Live metrics, reports, schedules and deliveries of wedding "
            "businesses. Every /orgs/{org} route needs a token of that organisation whose role "
            "grants the operation's x-permission.",
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "query_token": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
    }


def served_routes() -> dict[tuple[str, str], RouteSpec]:
    """The routes this worker's router serves, with what each declared."""
    out: dict[tuple[str, str], RouteSpec] = {}
    for route in app.web.web_app.router.routes():  # type: ignore[attr-defined]
        key = (route.method, route.resource.canonical)
        if key in ROUTE_SPECS:
            out[key] = ROUTE_SPECS[key]
    return out


_encoded: tuple[bytes, str] | None = None
"""The document encoded once (its routes do not change while the worker runs) and its ETag."""


@page("/openapi.json", permission=PUBLIC)
async def openapi_json(self: Any, request: web.Request) -> web.StreamResponse:
    """This API's OpenAPI 3.1 document (public: it describes the API, not a tenant's data).

    Encoded once per worker and served as the same bytes with a strong ``ETag`` (their
    SHA-256); a request whose ``If-None-Match`` names it gets 304 with no body. Public
    routes are not rate limited, so a request here must cost no more than a static file
    (an attacker's finding: a fresh 138 KB encoding per request slowed every tenant).
    """
    global _encoded
    if _encoded is None:
        body = msgspec.json.encode(build_document(served_routes()))
        _encoded = (body, f'"{hashlib.sha256(body).hexdigest()}"')
    body, etag = _encoded
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=body, content_type="application/json", headers={"ETag": etag})
