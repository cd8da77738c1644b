"""HTTP API of a worker.

- ``GET /health``: readiness (503 while starting, rebalancing or recovering) and the
  partitions this worker owns.
- ``GET /metrics``: Prometheus exposition.
- ``GET /orgs/{org}/venues/{venue}/metrics?grain=month&from=2016-01&to=2016-12``: a venue's
  booking totals per period (``grain`` = ``day`` with ``YYYY-MM-DD`` bounds, or ``month`` with
  ``YYYY-MM`` bounds, inclusive; at most 400 periods).
- ``POST /orgs/{org}/reports``: request a report (202 with its id and status link).
- ``GET /orgs/{org}/reports/{report_id}``: a report's status, artifacts and error.
- ``GET /orgs/{org}/reports/{report_id}/files/{format}``: download a completed report's file
  (its path is derived from organisation, report id, type and format, never read from a row).
- ``POST /orgs/{org}/reports/{report_id}/cancel``: cancel a queued or running report.

All ``/orgs`` routes need a bearer token of that organisation whose role grants the route's
permission (:mod:`stream_app.web.auth`, :mod:`stream_app.web.permissions`; checked with the
rate limits by :mod:`stream_app.web.guard` before the handler).
Errors are JSON: ``{"error": {"code", "reason", "field"}}``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import faust.web
import orjson
from aiohttp import web

from stream_app.app import app, settings
from stream_app.crypto.keyring import get_keyring
from stream_app.db import audit_events
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.report_scope import report_venues
from stream_app.db.tenancy import (
    UnknownOrganizationError,
    fetch_venues,
    tenant_read,
    tenant_transaction,
)
from stream_app.delivery.adhoc import delivery_summary
from stream_app.delivery.links import links_of_reports
from stream_app.logthrottle import TRACEBACK_KIND
from stream_app.observability import HTTP_REQUESTS
from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.routing import FORWARDED_HEADER, local_periods, owner_url, remote_periods
from stream_app.reports import registry
from stream_app.reports.accept import NotPublishedError, ReportIdTakenError, accept, validate
from stream_app.reports.artifacts import (
    ArtifactPathError,
    artifact_path,
    artifact_relpath,
    download_url,
)
from stream_app.reports.cancel import cancel_report
from stream_app.schemas.base import EventValidationError
from stream_app.schemas.ids import ID_RULE, is_valid_id, quoted, quoted_list
from stream_app.schemas.reports import OUTPUT_FORMATS, ReportRequest
from stream_app.tables.windows import (
    FIRST_YEAR,
    LAST_YEAR,
    WINDOW_GRAINS,
    LabelError,
    window_labels,
)
from stream_app.topics import WEDDING_BOOKINGS
from stream_app.web import guard
from stream_app.web.artifact_download import open_for_download, stream_artifact
from stream_app.web.auth import Principal, authenticate
from stream_app.web.delivery_targets import accept_report_delivery
from stream_app.web.dependencies import (
    KAFKA_TIMEOUT_S,
    RETRY_AFTER_S,
    DependencyUnavailableError,
    client_went_away,
    dependency_of,
    kafka_call,
)
from stream_app.web.errors import ApiError, api_error_of, report_not_found
from stream_app.web.guard import RouteSpec, check_priority, scoped_venues
from stream_app.web.inputs import json_object, period_query, read_body
from stream_app.web.metrics_page import metrics_response
from stream_app.web.permissions import PUBLIC, UNDECLARED, Permission, RouteAccess, allowed
from stream_app.web.refusals import REFUSED_STATUSES, Refusal, note_refusal, token_subject
from stream_app.web.responses import json_response

log = logging.getLogger(__name__)


_CREDENTIAL_PATHS = ("/downloads/",)
"""Paths whose last segment is a credential (a signed download link's token)."""


def loggable_path(request: web.Request) -> str:
    """``request.path`` as a log line may show it: a download link's token cut to its first
    8 characters (a whole link is a working credential; an attacker round found one in an
    error line)."""
    path = request.path
    for prefix in _CREDENTIAL_PATHS:
        if path.startswith(prefix):
            return f"{prefix}{path[len(prefix) : len(prefix) + 8]}…"
    return path


MAX_PERIODS = 400
Handler = Callable[..., Awaitable[web.StreamResponse]]


ENTITY_PATH_PARAMS: frozenset[str] = frozenset(
    {"org", "venue", "booking", "client", "supplier", "report_id", "schedule_id"}
)
"""Path segments that name an organisation, a report, a schedule or an entity of the events."""


def check_path_ids(params: Mapping[str, Any]) -> None:
    """Refuse a path id no event could carry (the events' identifier rule).

    Raises:
        ApiError: 400 ``invalid_field``, ``field`` = ``path.<name>``.
    """
    for name in ENTITY_PATH_PARAMS & params.keys():
        value = params[name]
        if not is_valid_id(value):
            raise ApiError(400, "invalid_field", f"{name}: {ID_RULE}", field=f"path.{name}")


def check_single_query_values(request: web.Request) -> None:
    """Refuse a query parameter given twice (which one would count is a guess).

    Raises:
        ApiError: 400 ``invalid_field`` naming the parameter.
    """
    for key in request.query.keys():  # noqa: SIM118 - a multidict: each key once
        if len(request.query.getall(key)) > 1:
            raise ApiError(400, "invalid_field", f"{key}: given more than once", field=key)


def api(route: str, spec: RouteSpec | None = None) -> Callable[[Handler], Handler]:
    """Wrap a handler: ApiError → JSON error response; count requests by route and status.
    Path ids (:data:`ENTITY_PATH_PARAMS`) and repeated query parameters are checked first
    (:func:`check_path_ids`, :func:`check_single_query_values`), then the token, role, venue
    scope and rate limits of the route's ``spec`` (:func:`stream_app.web.guard.guarded`)."""
    spec = spec or RouteSpec()

    def decorate(fn: Handler) -> Handler:
        async def wrapper(*args: Any, **kwargs: Any) -> web.StreamResponse:
            try:
                check_path_ids(kwargs)
                request = next(a for a in args if isinstance(getattr(a, "query", None), Mapping))
                check_single_query_values(request)
                async with guard.guarded(request, spec, kwargs):
                    resp = await fn(*args, **kwargs)
            except ApiError as exc:
                resp = exc.response()
            except QueryUnavailableError as exc:
                resp = api_error_of(exc).response()
            HTTP_REQUESTS.labels(route, str(resp.status)).inc()
            return resp

        wrapper.__doc__ = fn.__doc__
        return wrapper

    return decorate


_ROUTES: dict[str, dict[str, Handler]] = {}
ROUTE_SPECS: dict[tuple[str, str], RouteSpec] = {}
"""``(METHOD, path)`` → what the route declared (its permission, rate class, venue scope)."""


def page(
    path: str,
    method: str = "get",
    *,
    permission: RouteAccess = UNDECLARED,
    rate_class: str | None = None,
    venue_aware: bool = False,
    streaming: bool = False,
    forwarded: bool = False,
    rate_without: tuple[Permission, str] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare ``fn`` as the ``method`` handler of ``path`` (see :func:`register_routes`).

    Args:
        permission: what the caller's role must grant (:mod:`stream_app.web.permissions`),
            or ``PUBLIC``; a route that declares nothing is refused to every caller.
        rate_class: the rate-limit class, when not the permission's (see
            :class:`~stream_app.web.guard.RouteSpec`).
        venue_aware: the handler restricts its answer to a venue-scoped token's venues.
        streaming: a long-lived response (see :class:`~stream_app.web.guard.RouteSpec`).
        forwarded: a read the workers forward to each other, the only kind of route a
            worker-to-worker token may call (see :class:`~stream_app.web.guard.RouteSpec`).
        rate_without: ``(permission, class)``: the rate-limit class of a caller lacking
            ``permission`` (see :class:`~stream_app.web.guard.RouteSpec`).

    The handler is wrapped by :func:`api` (JSON errors, request counting, the guard).
    """

    def decorate(fn: Handler) -> Handler:
        methods = _ROUTES.setdefault(path, {})
        if method in methods:
            raise RuntimeError(f"{method.upper()} {path} is declared twice")
        spec = RouteSpec(permission, rate_class, venue_aware, streaming, forwarded, rate_without)
        ROUTE_SPECS[(method.upper(), path)] = spec
        methods[method] = api(path, spec)(fn)
        return fn

    return decorate


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own errors (unknown route 404, 405, 413 body too large) as JSON errors too,
    text the database cannot hold (a NUL byte in an id) as a 400 naming the path, PostgreSQL,
    Kafka or Redis unreachable as a 503 ``dependency_unavailable`` naming the service, with
    ``Retry-After`` (:mod:`stream_app.web.dependencies`), a statement past its timeout as a
    503 ``query_timeout`` with ``Retry-After``, another ``OSError`` as a 503
    ``service_unavailable`` with ``Retry-After``, and any other failure as a JSON 500
    ``internal_error`` with an incident id (logged with its traceback).

    A 401, 403 or 429 answered for an organisation path is recorded in the audit log as a
    refused request, aggregated per (organisation, client, reason) and minute so that a flood
    cannot fill the log (:mod:`stream_app.web.refusals`)."""
    resp = await _json_errors(request, handler)
    if resp.status in REFUSED_STATUSES:
        refusal = _refusal(request, resp)
        if refusal is not None:
            await note_refusal(refusal)
    return resp


def _refusal(request: web.Request, resp: web.StreamResponse) -> Refusal | None:
    """The refusal of ``request`` answered by ``resp`` (code and field from its JSON body);
    None when the path names no organisation, or not one with a valid id."""
    org = request.match_info.get("org")
    if org is None or not is_valid_id(org):
        return None
    error: dict[str, Any] = {}
    body = getattr(resp, "body", None)
    if isinstance(body, bytes):
        try:
            doc = orjson.loads(body)
            error = doc["error"] if isinstance(doc, dict) else {}
        except (orjson.JSONDecodeError, KeyError):
            error = {}
    resource = getattr(request.match_info.route, "resource", None)
    return Refusal(
        organization_id=org,
        client=request.remote or "unknown",
        status=resp.status,
        code=str(error.get("code", resp.status))[:64],
        field=None if error.get("field") is None else str(error["field"])[:128],
        method=request.method,
        route=resource.canonical if resource is not None else request.path[:256],
        subject=(
            token_subject(request.headers.get("Authorization", ""), org)
            if resp.status == 403
            else None
        ),
    )


async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 413:  # aiohttp's body limit: the same refusal as read_body's
            reason = f"the body is too large ({exc.text or exc.reason})"
            return ApiError(413, "too_large", reason, field="$").response()
        code = exc.reason.lower().replace(" ", "_")
        return json_response(
            {"error": {"code": code, "reason": exc.reason, "field": None}}, status=exc.status
        )
    except (
        asyncpg.CharacterNotInRepertoireError,
        asyncpg.UntranslatableCharacterError,
    ) as exc:
        reason = f"the request holds text the database cannot store: {exc}"
        return ApiError(400, "invalid_field", reason, field="path").response()
    except asyncpg.QueryCanceledError:
        # a statement ran past its timeout (a 10-year validation on a cold cache took 120 s
        # and was a 500 in an attacker round): retriable, said as such
        resp = ApiError(
            503, "query_timeout", "a database statement ran past its time limit; retry later"
        ).response()
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if client_went_away(exc):  # nothing to answer, nothing unavailable
            log.debug(
                "%s %s: the client went away: %r", request.method, loggable_path(request), exc
            )
            return web.Response(status=499)
        dependency = dependency_of(exc)
        if dependency is not None:  # PostgreSQL, Kafka or Redis unreachable: retriable
            log.warning(
                "%s %s: %s is unavailable: %r",
                request.method,
                loggable_path(request),
                dependency,
                exc,
            )
            return DependencyUnavailableError(dependency).response()
        if isinstance(exc, OSError):  # another service or the disk: retriable, said as such
            log.warning(
                "%s %s: a service is unavailable: %r", request.method, loggable_path(request), exc
            )
            resp = ApiError(
                503, "service_unavailable", "a backing service is unavailable; retry later"
            ).response()
            resp.headers["Retry-After"] = str(RETRY_AFTER_S)
            return resp
        # a bug: logged with an incident id the answer carries; the line is always written
        # (whoever's failure it is), its traceback once a minute per route and exception type
        incident = uuid.uuid4().hex
        route = getattr(getattr(request.match_info.route, "resource", None), "canonical", None)
        kind = f"{request.method} {route if isinstance(route, str) else '-'} {type(exc).__name__}"
        log.exception(
            "%s %s failed (incident %s): %s: %.500s",
            request.method,
            loggable_path(request),
            incident,
            type(exc).__name__,
            exc,
            extra={TRACEBACK_KIND: kind},
        )
        return ApiError(
            500, "internal_error", f"the request failed on our side (incident {incident})"
        ).response()


def register_routes() -> None:
    """Register every declared route on the worker's web server, one view per path.

    faust builds one :class:`faust.web.View` per path with all its methods (and maps a bare
    function to GET only), so the handlers declared with :func:`page` are gathered first.
    """
    app.web.web_app.middlewares.append(json_errors)  # type: ignore[attr-defined]
    for path, methods in _ROUTES.items():
        view = type(f"View{len(path)}_{abs(hash(path))}", (faust.web.View,), dict(methods))
        app.page(path)(view)
    _ROUTES.clear()


def _period_bound(name: str, text: str, grain: str) -> date:
    """The first date of the period ``text`` names (``YYYY-MM-DD`` for ``day``, ``YYYY-MM``
    for ``month``).

    Raises:
        ApiError: 400 naming ``name`` (``from`` or ``to``, the one that failed: a trial user's
            bad ``to`` was blamed on ``from``), saying whether the form or the date is wrong.
    """
    fmt = "YYYY-MM-DD" if grain == "day" else "YYYY-MM"
    form = r"\d{4}-\d{2}-\d{2}" if grain == "day" else r"\d{4}-\d{2}"
    if not re.fullmatch(form, text, re.ASCII):
        raise ApiError(
            400,
            "invalid_field",
            f"{name}: must be {fmt} for grain={grain}, got {quoted(text)}",
            field=name,
        )
    try:
        return date.fromisoformat(text if grain == "day" else text + "-01")
    except ValueError:
        raise ApiError(
            400, "invalid_field", f"{name}: {text} is not a date of the calendar", field=name
        ) from None


def period_labels(grain: str, start: str, end: str) -> list[str]:
    """The period labels from ``start`` to ``end`` inclusive (validated).

    ``day``/``month`` are service-date periods; the ``event_*`` grains are event-time
    windows (labels: :mod:`stream_app.tables.windows`).
    """
    if grain in WINDOW_GRAINS:
        try:
            return window_labels(grain, start, end, MAX_PERIODS)
        except LabelError as exc:
            raise ApiError(400, "invalid_field", str(exc), field=exc.field) from None
    if grain not in ("day", "month"):
        raise ApiError(
            400,
            "invalid_field",
            f"grain must be one of {['day', 'month', *WINDOW_GRAINS]}",
            field="grain",
        )
    lo, hi = _period_bound("from", start, grain), _period_bound("to", end, grain)
    for name, bound in (("from", lo), ("to", hi)):
        if not FIRST_YEAR <= bound.year <= LAST_YEAR:
            raise ApiError(
                400, "invalid_field", f"{name} must be in {FIRST_YEAR}..{LAST_YEAR}", field=name
            )
    if hi < lo:
        raise ApiError(400, "invalid_field", "to must not be before from", field="to")
    out: list[str] = []
    cur = lo
    while cur <= hi:
        out.append(cur.isoformat() if grain == "day" else cur.isoformat()[:7])
        if len(out) > MAX_PERIODS:
            raise ApiError(
                400, "range_too_large", f"at most {MAX_PERIODS} periods per request", field="to"
            )
        cur = (
            cur + timedelta(days=1) if grain == "day" else (cur + timedelta(days=32)).replace(day=1)
        )
    return out


def forwarded_by_a_worker(request: web.Request, org: str) -> bool:
    """Whether ``request`` is another worker's forwarded read (:data:`FORWARDED_HEADER` with a
    worker-to-worker token): the sender thought this worker owns the partition, so it is not
    forwarded again (a 503 while ownership moves). A client's token sending the header is not
    believed: its read is forwarded as any other (an attacker's finding: the header gave a
    false 503 that told which worker owns the organisation's partitions).

    Raises:
        ApiError: 401/403 of :func:`~stream_app.web.auth.authenticate`.
    """
    if not request.headers.get(FORWARDED_HEADER):
        return False
    return authenticate(request, settings.jwt_secret, org).internal


def scope_report_filters(principal: Principal, body: dict[str, Any]) -> None:
    """Limit a venue-scoped token's report request to its venues (``body`` is changed).

    Without ``data_filters.venue_id`` the filter becomes the token's venues; with it, every
    venue named must be in the scope. A malformed filter is left to the request's validation.

    Raises:
        ApiError: 403 naming ``$.data_filters.venue_id``.
    """
    if principal.venues is None:
        return
    filters = body.get("data_filters", {})
    if not isinstance(filters, dict):
        return
    requested = filters.get("venue_id")
    if requested is not None and not isinstance(requested, list):
        return
    if requested is not None and not all(isinstance(v, str) for v in requested):
        return  # not a list of ids: the validation's 400 names the entry (never a 500/403)
    body["data_filters"] = {
        **filters,
        "venue_id": scoped_venues(principal, requested, "$.data_filters.venue_id"),
    }


def check_scoped_type(principal: Principal, report_type: str) -> None:
    """Refuse a venue-scoped token a report type that cannot be limited to venues (it
    would be accepted, then fail on its filter: refused up front, as ``…/reports/validate``
    refuses it).

    Raises:
        ApiError: 400 ``invalid_field`` naming ``$.data_filters.venue_id``.
    """
    if principal.venues is None or registry.get(report_type).venue_filter:
        return
    raise ApiError(
        400,
        "invalid_field",
        f"not supported by report type {report_type!r}, which covers the whole organisation"
        " (the token is limited to venues)",
        field="$.data_filters.venue_id",
    )


async def check_report_scope(
    conn: asyncpg.Connection, principal: Principal, report_id: str
) -> None:
    """Refuse a venue-scoped token a report not limited to venues within its scope.

    Raises:
        ApiError: 403 naming ``venue_scope``.
    """
    if principal.venues is None:
        return
    venues = await report_venues(conn, principal.organization_id, report_id)
    if venues is None or not set(venues) <= principal.venues:
        raise ApiError(
            403,
            "forbidden",
            "the report is not limited to the token's venue scope",
            field="venue_scope",
        )


async def scoped_report(
    conn: asyncpg.Connection, principal: Principal, org: str, report_id: str
) -> report_db.ReportRecord:
    """Report ``report_id`` of ``org``, once :func:`check_report_scope` lets ``principal``
    see it.

    Raises:
        ApiError: 403 naming ``venue_scope``; 404 naming ``report_id`` for an unknown report.
    """
    await check_report_scope(conn, principal, report_id)
    rec = await report_db.fetch_report(conn, org, report_id)
    if rec is None:
        raise report_not_found(report_id)
    return rec


def readiness() -> str:
    """This worker's state for ``/health``: ``starting`` (not yet in its consumer group),
    ``rebalancing`` (partitions moving), ``recovering`` (restoring tables from their
    changelogs) or ``ok`` (its table reads answer)."""
    if getattr(app, "rebalancing_count", 0) == 0:
        return "starting"
    if getattr(app, "rebalancing", False):
        return "rebalancing"
    if getattr(app, "in_recovery", False):
        return "recovering"
    return "ok"


@page("/health", permission=PUBLIC)
async def health(self: Any, request: web.Request) -> web.StreamResponse:
    """Readiness and the input partitions this worker owns.

    200 ``{"status": "ok", "ready": true, "bookings_partitions": [0, 2]}`` when the worker
    can answer table reads; 503 with ``status`` ``starting``, ``rebalancing`` or
    ``recovering`` and ``ready`` false before that (:func:`readiness`), so a readiness probe
    keeps clients away while its reads would answer 503 ``recovering``. A liveness probe
    reads ``/metrics`` instead: a long table restore is not a hung worker.
    """
    actives = sorted(
        tp.partition for tp in app.assignor.assigned_actives() if tp.topic == WEDDING_BOOKINGS
    )
    status = readiness()
    return json_response(
        {"status": status, "ready": status == "ok", "bookings_partitions": actives},
        status=200 if status == "ok" else 503,
    )


@page("/metrics", permission=PUBLIC)
async def metrics(self: Any, request: web.Request) -> web.StreamResponse:
    """Prometheus metrics of this worker, rendered at a bounded rate
    (:mod:`stream_app.web.metrics_page`)."""
    return await metrics_response()


@page("/orgs/{org}/venues/{venue}/metrics", permission=Permission.TABLES_READ, forwarded=True)
async def venue_metrics(
    self: Any, request: web.Request, org: str, venue: str
) -> web.StreamResponse:
    """A venue's booking totals per period (see the module docstring).

    Answered from whichever worker holds the venue's partition: a request reaching another
    worker is forwarded once (the caller does not need to know which worker owns what).
    """
    authenticate(request, settings.jwt_secret, org)
    grain, start, end = period_query(
        request, "month", "query parameters 'from' and 'to' are required"
    )
    periods = period_labels(grain, start, end)
    owner = owner_url(org, venue)
    if owner is not None:
        if forwarded_by_a_worker(request, org):
            raise ApiError(503, "rebalancing", "partition ownership is moving; retry")
        rows = await remote_periods(owner, org, venue, grain, periods[0], periods[-1])
    else:
        rows = local_periods(org, venue, grain, periods)
    return json_response(
        {"organization_id": org, "venue_id": venue, "grain": grain, "periods": rows}
    )


async def check_venue_filter(pool: asyncpg.Pool, org: str, req: ReportRequest) -> None:
    """Refuse a request whose ``data_filters.venue_id`` names a venue the organisation does
    not have (another organisation's venues are unknown here too), or whose report type takes
    no venue filter, before anything is recorded: the request would only fail later with the
    same cause.

    Raises:
        ApiError: 400 naming ``$.data_filters.venue_id`` and the unknown ids.
    """
    wanted = req.data_filters.get("venue_id")
    if not wanted:
        return
    if not registry.get(req.report_type).venue_filter:
        # refused up front for every token, as ``…/reports/validate`` refuses it (a trial
        # user's organisation-wide token got 202, then the report failed on its filter)
        raise ApiError(
            400,
            "invalid_field",
            f"not supported by report type {req.report_type!r}, which covers the whole"
            " organisation",
            field="$.data_filters.venue_id",
        )
    await refuse_unknown_venues(pool, org, wanted, "$.data_filters.venue_id")


async def refuse_unknown_venues(
    pool: asyncpg.Pool, org: str, wanted: Iterable[str], field: str, prefix: str = "", why: str = ""
) -> None:
    """Refuse venue ids the organisation has not registered (another organisation's venues
    are unknown here too): 400 ``invalid_field`` naming ``field``, the reason
    ``"<prefix>unknown venue(s) [...] in organisation '<org>'<why>"``.

    Raises:
        ApiError: as above, when any id of ``wanted`` is unknown.
    """
    async with pool.acquire() as conn:
        known = {v.id for v in await fetch_venues(conn, org)}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise ApiError(
            400,
            "invalid_field",
            f"{prefix}unknown venue(s) {quoted_list(unknown)} in organisation {org!r}{why}",
            field=field,
        )


@page("/orgs/{org}/reports", method="post", permission=Permission.REPORTS_REQUEST, venue_aware=True)
async def request_report(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Accept a report request (:mod:`stream_app.reports.accept`), answer 202."""
    principal = authenticate(request, settings.jwt_secret, org)
    body = json_object(await read_body(request))
    for forbidden in ("organization_id", "user_id", "schema_version", "requested_at"):
        if forbidden in body:
            raise ApiError(
                400, "invalid_field", f"{forbidden} is set by the server", field=f"$.{forbidden}"
            )
    scope_report_filters(principal, body)
    doc = {
        "schema_version": 1,
        "report_id": body.pop("report_id") if "report_id" in body else str(uuid.uuid4()),
        "organization_id": org,
        "user_id": principal.user_id,
        "requested_at": datetime.now(UTC).isoformat(),
        **body,
    }
    raw = orjson.dumps(doc)
    try:
        req = validate(raw)
    except EventValidationError as exc:
        raise ApiError(400, "invalid_field", exc.reason, field=exc.field) from None
    check_priority(principal, req.priority)
    check_scoped_type(principal, req.report_type)
    raw, req = await accept_report_delivery(principal, raw, req)  # 403/400; secrets sealed
    pool = await get_pool(settings.postgres_dsn)
    await check_venue_filter(pool, org, req)
    try:
        await accept(
            req,
            raw,
            channel="http",
            pool=pool,
            interactive=True,
            publish_timeout_s=KAFKA_TIMEOUT_S,
        )
    except UnknownOrganizationError as exc:
        raise ApiError(404, "not_found", str(exc), field="organization_id") from None
    except ReportIdTakenError as exc:
        raise ApiError(409, "conflict", str(exc), field="$.report_id") from None
    except NotPublishedError as exc:
        if exc.too_large:  # the request itself: sending it again cannot help
            reason = f"the report request is larger than the queue takes: {exc.reason}"
            raise ApiError(413, "too_large", reason, field="$") from None
        raise DependencyUnavailableError(
            "kafka", f"could not enqueue the request: {exc.reason}; retry in {RETRY_AFTER_S} s"
        ) from None
    return json_response(
        {
            "report_id": req.report_id,
            "status": "queued",
            "status_url": f"/orgs/{org}/reports/{req.report_id}",
        },
        status=202,
    )


@page("/orgs/{org}/reports/{report_id}", permission=Permission.REPORTS_READ, venue_aware=True)
async def report_status(
    self: Any, request: web.Request, org: str, report_id: str
) -> web.StreamResponse:
    """A report's stored status (404 when unknown to this organisation); ``delivery_links``
    (bearer download links a delivery handed out) and delivery targets only for principals
    with ``deliveries:read``, an empty list and masked details otherwise."""
    principal = authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    # one tenant transaction for the reads below (each a tenant read): 6 round trips, not 9
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        rec = await scoped_report(conn, principal, org, report_id)
        # targets and the delivery's bearer links: only to who may read the delivery log
        log_reader = allowed(principal.role, Permission.DELIVERIES_READ)
        links = (await links_of_reports(conn, org, [rec.id])).get(rec.id, []) if log_reader else []
        delivery = await delivery_summary(conn, org, rec.id, show_targets=log_reader)
    return json_response(
        {
            "report_id": rec.id,
            "organization_id": rec.organization_id,
            "report_type": rec.report_type,
            "status": rec.status,
            "artifacts": [public_artifact(org, rec.id, rec.report_type, a) for a in rec.artifacts],
            "error": rec.error,
            "processing_ms": rec.processing_ms,
            "created_at": rec.created_at.isoformat(),
            "updated_at": rec.updated_at.isoformat(),
            "priority": rec.priority,
            "cache_strategy": rec.cache_strategy,
            "attempts": rec.attempts,
            "attempt_errors": rec.attempt_errors or [],
            "generated_at": rec.generated_at.isoformat() if rec.generated_at else None,
            "data_size": {"bytes": rec.data_size_bytes, "rows": rec.data_rows},
            "metadata": rec.metadata or {},
            "cache": rec.cache,
            "performance": rec.performance,
            "delivery_links": links,
            "delivery": delivery,
        }
    )


CANCEL_TRIES = 3
"""Cancellations tried while the report reads ``queued`` or ``processing`` after one."""


@page(
    "/orgs/{org}/reports/{report_id}/cancel",
    method="post",
    permission=Permission.REPORTS_REQUEST,
    rate_class="admin",  # not ``reports``: a flood of requests must not block cancelling it
    # ... by an admin; an analyst's cancellations count in a class of their own, so analysts
    # can never use up what admins need (token revocation, GDPR, schedules, audit) nor be
    # kept from cancelling their own backlog by it
    rate_without=(Permission.REPORTS_CANCEL_ANY, "cancels"),
    venue_aware=True,
)
async def report_cancel(
    self: Any, request: web.Request, org: str, report_id: str
) -> web.StreamResponse:
    """Cancel a queued or running report: 200 ``{"status": "cancelled"}``; 409 when final."""
    principal = authenticate(request, settings.jwt_secret, org)
    if principal.venues is not None:
        async with (await get_pool(settings.postgres_dsn)).acquire() as conn:
            await check_report_scope(conn, principal, report_id)
    # another user's report needs reports:cancel-any; checked in the cancelling statement
    # itself (an attacker round cancelled others' reports between a check and the change)
    owner = None if allowed(principal.role, Permission.REPORTS_CANCEL_ANY) else principal.user_id
    # the cancellation commits in PostgreSQL before its status goes to Kafka: a 503 here
    # (Kafka away) is safe to retry, a repeated cancel answers "cancelled" again
    for _ in range(CANCEL_TRIES):
        outcome = await kafka_call(
            cancel_report(org, report_id, actor=principal.user_id, owner=owner),
            "the cancellation's status",
        )
        # a report recorded between the change and the status read is still cancellable:
        # asked again (it was a contradictory 409 "already queued")
        if outcome not in ("queued", "processing"):
            break
    if outcome == report_db.NOT_THE_OWNERS:
        raise ApiError(
            403,
            "forbidden",
            f"role {principal.role!r} may cancel only the reports its user requested; this one"
            f" is another user's or a scheduled run's: cancelling it needs permission"
            f" {Permission.REPORTS_CANCEL_ANY.value!r} (admin)",
            field="path.report_id",
        )
    if outcome is None:
        raise report_not_found(report_id)
    if outcome != "cancelled":
        raise ApiError(
            409, "conflict", f"report is already {outcome}; it cannot be cancelled", field="status"
        )
    return json_response({"report_id": report_id, "status": "cancelled"})


async def _no_file(conn: asyncpg.Connection, rec: report_db.ReportRecord, fmt: str) -> str:
    """Why a report has no ``fmt`` file to download: not requested (a trial user read "no
    completed 'pdf' file" of a report asked in CSV and JSON), not completed, or removed."""
    async with tenant_read(conn, rec.organization_id):
        requested = await conn.fetchval(
            "SELECT request -> 'output_formats' FROM reports WHERE organization_id = $1"
            " AND id = $2",
            rec.organization_id,
            rec.id,
        )
    formats = orjson.loads(requested) if isinstance(requested, str) else requested
    if isinstance(formats, list) and fmt not in formats:
        shown = ", ".join(str(f) for f in formats)
        return f"{fmt} was not requested for this report (formats: {shown})"
    if rec.status != "completed":
        state = {"failed": "the report failed", "cancelled": "the report was cancelled"}.get(
            rec.status, f"the report is {rec.status}"
        )
        return f"{state}: a report has files once it is completed"
    return f"report has no completed {fmt!r} file (removed by an erasure or the retention rule)"


@page(
    "/orgs/{org}/reports/{report_id}/files/{fmt}",
    permission=Permission.REPORTS_READ,
    rate_class="downloads",
    venue_aware=True,
)
async def report_file(
    self: Any, request: web.Request, org: str, report_id: str, fmt: str
) -> web.StreamResponse:
    """Download one file of a completed report (audited: ``report.downloaded``); a format
    that no report has (``xlsx`` for ``excel``) is a 400 listing the formats."""
    principal = authenticate(request, settings.jwt_secret, org)
    if fmt not in OUTPUT_FORMATS:
        raise ApiError(
            400,
            "invalid_field",
            f"{quoted(fmt)} is not a report format (one of {sorted(OUTPUT_FORMATS)})",
            field="path.fmt",
        )
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        rec = await scoped_report(conn, principal, org, report_id)
        match = [a for a in rec.artifacts if a["format"] == fmt]
        if rec.organization_id != org or rec.status != "completed" or not match:
            raise ApiError(404, "not_found", await _no_file(conn, rec, fmt), field="path.fmt")
    try:  # derived from (organisation, report id, type, format); the row's path is not read
        rel = artifact_relpath(org, rec.id, rec.report_type, fmt)
        artifact_path(settings.artifact_dir, org, rec.id, rec.report_type, fmt)
    except ArtifactPathError:
        raise ApiError(404, "not_found", f"report has no {fmt!r} file", field="path.fmt") from None
    keys = await get_keyring(settings.postgres_dsn)
    reader = await open_for_download(settings.artifact_dir, org, rel, keys)
    path = reader.path
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        await audit_events.record(
            conn,
            org,
            principal.user_id,
            "report.downloaded",
            report_id,
            {"format": fmt, "sha256": match[0]["sha256"], "channel": "http"},
        )
    return await stream_artifact(
        request,
        reader,
        {
            "Content-Disposition": f'attachment; filename="{Path(path).name}"',
            "Content-Type": media_type(path),
            "Digest": f"sha-256={match[0]['sha256']}",
        },
    )


def public_artifact(
    organization_id: str, report_id: str, report_type: str, stored: Mapping[str, Any]
) -> dict[str, Any]:
    """An artifact as a status answer shows it: format, checksum, size, rows, the path
    relative to the store (derived) and the download URL; never a local ``file://`` URI."""
    fmt = str(stored.get("format"))
    url = download_url(organization_id, report_id, fmt)
    try:
        rel: str | None = artifact_relpath(organization_id, report_id, report_type, fmt)
    except ArtifactPathError:
        rel = None
    return {
        "format": fmt,
        "path": rel,
        "uri": url,
        "download_url": url,
        "sha256": stored.get("sha256"),
        "size_bytes": stored.get("size_bytes"),
        "rows": stored.get("rows"),
    }


MEDIA_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pdf": "application/pdf",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
"""The IANA media type of each artifact extension (set explicitly: the machine's mime
database may not know the Office formats)."""


def media_type(path: Path) -> str:
    """The media type of an artifact file (``application/octet-stream`` if unknown)."""
    return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
