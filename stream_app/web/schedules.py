"""HTTP API of report schedules (create, read, update, pause, resume, delete, preview, runs).

- ``POST /orgs/{org}/schedules``: create (201); body: ``report_type``, ``date_range``
  (``previous_month``, ``previous_week``, ``previous_day``, ``previous_quarter``,
  ``last_n_days:N``), ``output_formats``, ``cron`` (5 fields), ``time_zone`` (IANA; default
  the organisation's), ``delivery`` (``{"method": "email"|"webhook"|"sftp"|"api", ...}``),
  optional ``schedule_id``, ``retry``, ``expires_at``, ``skip_if_empty``,
  ``min_interval_seconds``, ``recipient_filters``, ``priority``.
- ``GET /orgs/{org}/schedules`` and ``GET /orgs/{org}/schedules/{id}`` (with the next fire
  times); ``PUT /orgs/{org}/schedules/{id}`` replaces it; ``DELETE`` removes it;
  ``POST /orgs/{org}/schedules/{id}/pause`` and ``/resume``.
- ``GET /orgs/{org}/schedules/{id}/runs``: runs (with their queued retries and the download
  links their deliveries handed out) and the delivery log.
- ``GET /orgs/{org}/schedules/preview?cron=…[&time_zone=…][&count=5][&min_interval_seconds=300]``:
  fire times (UTC).
- ``GET /downloads/{token}``: a signed download link of a delivery (no bearer token: the link
  is the credential; it expires, can be revoked, and every download is audited).
- ``POST /orgs/{org}/reports/{report_id}/links/revoke`` and
  ``POST /orgs/{org}/schedules/{schedule_id}/links/revoke``: revoke every download link of a
  report / schedule issued until now. Deleting a schedule revokes its links too.

Secrets (webhook keys, SFTP passwords and keys) are accepted and never returned.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from stream_app.app import settings
from stream_app.crypto.keyring import get_keyring
from stream_app.db import audit_events
from stream_app.db import reports as report_db
from stream_app.db.audit_events import record as audit
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import (
    UnknownOrganizationError,
    check_time_zone,
    fetch_organization,
    fetch_venues,
    tenant_transaction,
)
from stream_app.delivery.api import LinkError, LinkTargetGoneError, resolve_download
from stream_app.delivery.links import check_not_revoked, links_of_reports, revoke
from stream_app.delivery.log import fetch_schedule_log
from stream_app.delivery.queue import pending_by_run
from stream_app.reports import registry
from stream_app.schedules import store
from stream_app.schedules.cron import CronExpressionError, fire_times
from stream_app.schedules.model import (
    DEFAULT_MIN_INTERVAL_SECONDS,
    MAX_MIN_INTERVAL_SECONDS,
    RecipientFilter,
    Schedule,
    ScheduleValidationError,
)
from stream_app.schemas.ids import quoted_list
from stream_app.web import ratelimit
from stream_app.web.artifact_download import open_for_download, stream_artifact
from stream_app.web.auth import Principal, authenticate
from stream_app.web.delivery_targets import (
    convert_field,
    public_target,
    retry_from_json,
    target_from_json,
)
from stream_app.web.errors import ApiError, report_not_found
from stream_app.web.inputs import allow_query, json_value, read_body, require_query
from stream_app.web.numbers import ascii_int
from stream_app.web.permissions import PUBLIC, Permission
from stream_app.web.responses import json_response
from stream_app.web.views import media_type, page

_FIELDS = {
    "schedule_id",
    "report_type",
    "date_range",
    "output_formats",
    "cron",
    "time_zone",
    "delivery",
    "retry",
    "expires_at",
    "paused",
    "skip_if_empty",
    "min_interval_seconds",
    "recipient_filters",
    "priority",
}


def schedule_from_json(
    body: Any,
    *,
    organization_id: str,
    principal: Principal,
    default_zone: str,
    schedule_id: str | None = None,
) -> Schedule:
    """Build and validate a :class:`Schedule` from a request body.

    Args:
        schedule_id: the path's id (a replacement), which a ``schedule_id`` in the body must
            equal; None for a new schedule (the body's id, else a random one).

    Raises:
        ApiError: 400 naming the field as a report request's errors do, from the body's root
            (``$.cron``, ``$.delivery.url``, ``$.retry.base_backoff_s``): unknown field, wrong
            type, invalid value, a ``schedule_id`` other than the path's.
    """
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_field", "body must be a JSON object", field="$")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ApiError(400, "invalid_field", f"unknown field(s) {unknown}", field=f"$.{unknown[0]}")
    if schedule_id is not None and body.get("schedule_id", schedule_id) != schedule_id:
        raise ApiError(
            400,
            "invalid_field",
            f"{body['schedule_id']!r} differs from the path's schedule_id {schedule_id!r}"
            " (a schedule keeps its id: leave it out of the body, or send the same)",
            field="$.schedule_id",
        )
    for required in ("report_type", "date_range", "output_formats", "cron", "delivery"):
        if required not in body:
            raise ApiError(400, "missing_field", f"{required} is required", field=f"$.{required}")
    try:
        target = target_from_json(body["delivery"], "$.delivery")
        retry = retry_from_json(body.get("retry", {}), "$.retry")
        filters = tuple(
            convert_field(f, RecipientFilter, "$.recipient_filters")
            for f in body.get("recipient_filters", [])
        )
        expires_at = body.get("expires_at")
        return Schedule(
            schedule_id=schedule_id or body.get("schedule_id") or f"sch-{uuid.uuid4().hex[:16]}",
            organization_id=organization_id,
            created_by=principal.user_id,
            report_type=str(body["report_type"]),
            date_range=str(body["date_range"]),
            output_formats=convert_field(
                body["output_formats"], tuple[str, ...], "$.output_formats"
            ),
            cron=str(body["cron"]),
            # left out or null: the organisation's; "" is refused as the preview refuses it
            # (an attacker round: it was taken for the organisation's zone)
            time_zone=(
                default_zone
                if body.get("time_zone") is None
                else convert_field(body["time_zone"], str, "$.time_zone")
            ),
            delivery=target,
            retry=retry,
            expires_at=convert_field(expires_at, datetime, "$.expires_at") if expires_at else None,
            paused=convert_field(body.get("paused", False), bool, "$.paused"),
            skip_if_empty=convert_field(body.get("skip_if_empty", False), bool, "$.skip_if_empty"),
            min_interval_seconds=convert_field(
                body.get("min_interval_seconds", 300), int, "$.min_interval_seconds"
            ),
            recipient_filters=filters,
            priority=body.get("priority", "normal"),
        )
    except ScheduleValidationError as exc:  # the model names its field: cron, delivery.url
        raise ApiError(400, "invalid_field", exc.reason, field=f"$.{exc.field}") from None
    except (TypeError, ValueError) as exc:
        raise ApiError(400, "invalid_field", str(exc), field="$") from None


def schedule_to_json(stored: store.StoredSchedule, upcoming: list[datetime]) -> dict[str, Any]:
    """The public view of a stored schedule (no secrets)."""
    s = stored.schedule

    def iso(d: datetime | None) -> str | None:
        return d.isoformat() if d else None

    return {
        "schedule_id": s.schedule_id,
        "organization_id": s.organization_id,
        "created_by": s.created_by,
        "report_type": s.report_type,
        "date_range": s.date_range,
        "output_formats": list(s.output_formats),
        "cron": s.cron,
        "time_zone": s.time_zone,
        "delivery": public_target(s.delivery),
        "retry": {
            "max_attempts": s.retry.max_attempts,
            "base_backoff_s": s.retry.base_backoff_s,
            "max_backoff_s": s.retry.max_backoff_s,
        },
        "expires_at": iso(s.expires_at),
        "paused": s.paused,
        "skip_if_empty": s.skip_if_empty,
        "min_interval_seconds": s.min_interval_seconds,
        "priority": s.priority,
        "next_fire_time": iso(stored.next_fire_time),
        "last_fire_time": iso(stored.last_fire_time),
        "upcoming_fire_times": [d.isoformat() for d in upcoming],
    }


def _upcoming(
    s: Schedule,
    now: datetime,
    last_fire: datetime | None = None,
    budget_s: float | None = None,
) -> list[datetime]:
    """The next (up to) five fire times that will really run: after ``now``, before the
    expiration, and at least ``min_interval_seconds`` after the previous run, found within
    ``budget_s`` seconds (at most :data:`UPCOMING_BUDGET_S`; fewer listed beyond it)."""
    if s.paused:
        return []
    budget = UPCOMING_BUDGET_S if budget_s is None else min(budget_s, UPCOMING_BUDGET_S)
    if budget <= 0:
        return []
    times = fire_times(s.cron, s.time_zone, now)
    if s.expires_at is not None:
        expires = s.expires_at
        times = itertools.takewhile(lambda t: t < expires, times)
    return spaced(times, s.min_interval_seconds, 5, last_fire, budget)[0]


async def _body(request: web.Request) -> Any:
    """The JSON body, at most :data:`~stream_app.web.inputs.MAX_BODY_BYTES` (413 beyond: a
    schedule is well under it; an attacker round's 1 MiB bodies cost the event loop 0.2 s
    each, every tenant's reads waiting behind them)."""
    return json_value(await read_body(request))


def _audit_details(schedule: Schedule) -> dict[str, Any]:
    """What the audit log keeps of a saved schedule: its settings, never its recipients,
    addresses or secrets."""
    return {
        "report_type": schedule.report_type,
        "date_range": schedule.date_range,
        "output_formats": list(schedule.output_formats),
        "cron": schedule.cron,
        "time_zone": schedule.time_zone,
        "delivery_method": schedule.delivery.method,
        "paused": schedule.paused,
        "priority": schedule.priority,
        "expires_at": None if schedule.expires_at is None else schedule.expires_at.isoformat(),
    }


async def _save(request: web.Request, org: str, schedule_id: str | None) -> web.Response:
    principal = authenticate(request, settings.jwt_secret, org)
    body = await _body(request)
    pool = await get_pool(settings.postgres_dsn)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        try:
            organization = await fetch_organization(conn, org)
        except UnknownOrganizationError as exc:
            raise ApiError(404, "not_found", str(exc), field="organization_id") from None
        schedule = schedule_from_json(
            body,
            organization_id=org,
            principal=principal,
            default_zone=organization.time_zone,
            schedule_id=schedule_id,
        )
        if schedule_id is not None:  # the owner stays the creator (the token's subject then)
            try:
                existing = await store.get_schedule(conn, org, schedule_id)
            except store.ScheduleNotFoundError as exc:
                raise ApiError(404, "not_found", str(exc), field="path.schedule_id") from None
            schedule = dataclasses.replace(schedule, created_by=existing.schedule.created_by)
        try:
            schedule.check_at(now)
        except ScheduleValidationError as exc:
            raise ApiError(400, "invalid_field", exc.reason, field=f"$.{exc.field}") from None
        await _check_recipient_filters(conn, schedule)
        try:
            async with tenant_transaction(conn, org):  # the audit row commits with the change
                if schedule_id is None:
                    await store.create_schedule(
                        conn, schedule, now, max_schedules=settings.max_schedules_per_org
                    )
                else:
                    await store.update_schedule(conn, schedule, now)
                await audit_events.record(
                    conn,
                    org,
                    principal.user_id,
                    "schedule.created" if schedule_id is None else "schedule.updated",
                    schedule.schedule_id,
                    _audit_details(schedule),
                )
        except store.ScheduleExistsError as exc:  # the body's schedule_id
            raise ApiError(409, "conflict", str(exc), field="$.schedule_id") from None
        except store.ScheduleLimitError as exc:  # one tenant's flood of schedules
            raise ApiError(409, "too_many_schedules", str(exc), field="$.schedule_id") from None
        except store.ScheduleNotFoundError as exc:
            raise ApiError(404, "not_found", str(exc), field="path.schedule_id") from None
        stored = await store.get_schedule(conn, org, schedule.schedule_id)
    return json_response(
        schedule_to_json(stored, _upcoming(schedule, now, stored.last_fire_time)),
        status=201 if schedule_id is None else 200,
    )


async def _check_recipient_filters(conn: Any, schedule: Schedule) -> None:
    """Refuse recipient filters every run would fail on, as a report request's
    ``data_filters`` are refused: a filter on a report type that takes none, or on venues the
    organisation does not have (an attacker round's schedule was saved, then failed every run).

    Raises:
        ApiError: 400 naming ``$.recipient_filters[i].field`` or ``….values``.
    """
    if not schedule.recipient_filters:
        return
    report_type = registry.get(schedule.report_type)
    known = {v.id for v in await fetch_venues(conn, schedule.organization_id)}
    for i, rf in enumerate(schedule.recipient_filters):
        where = f"$.recipient_filters[{i}]"
        if rf.field == "venue_id" and not report_type.venue_filter:
            raise ApiError(
                400,
                "invalid_field",
                f"report type {schedule.report_type!r} covers the whole organisation: it takes"
                " no venue filter",
                field=f"{where}.field",
            )
        unknown = sorted(set(rf.values) - known)
        if rf.field == "venue_id" and unknown:
            raise ApiError(
                400,
                "invalid_field",
                f"unknown venue(s) {quoted_list(unknown)} in organisation"
                f" {schedule.organization_id!r}",
                field=f"{where}.values",
            )


@page("/orgs/{org}/schedules", method="post", permission=Permission.SCHEDULES_MANAGE)
async def create_schedule(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Create a schedule (201)."""
    return await _save(request, org, None)


@page("/orgs/{org}/schedules", permission=Permission.SCHEDULES_MANAGE)
async def list_schedules(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """Every schedule of the organisation."""
    authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        found = await store.list_schedules(conn, org)
    # the whole list's upcoming times within LIST_BUDGET_S (an attacker round's list of 30
    # schedules of costly expressions held every tenant's requests 3.3 s): past it, the
    # rest list none (each schedule's own GET lists its own)
    deadline = time.monotonic() + LIST_BUDGET_S
    return json_response(
        {
            "schedules": [
                schedule_to_json(
                    s,
                    _upcoming(s.schedule, now, s.last_fire_time, deadline - time.monotonic()),
                )
                for s in found
            ]
        }
    )


@page("/orgs/{org}/schedules/preview", permission=Permission.SCHEDULES_MANAGE)
async def preview_fire_times(self: Any, request: web.Request, org: str) -> web.StreamResponse:
    """The next ``count`` (5) fire times (UTC) a schedule with this ``cron`` would run,
    without storing anything: read in ``time_zone`` (the organisation's when left out, as a
    schedule's) and spaced by ``min_interval_seconds`` (300 when left out, as a schedule's: a
    trial user's preview of ``* * * * *`` listed every minute, the schedule ran every five).
    """
    authenticate(request, settings.jwt_secret, org)
    q = request.query
    allow_query(request, _PREVIEW_QUERY)
    require_query(request, ("cron",), "query parameter cron is required")
    count = _int_query(request, "count", 5)
    gap = _int_query(request, "min_interval_seconds", DEFAULT_MIN_INTERVAL_SECONDS)
    if not 0 <= gap <= MAX_MIN_INTERVAL_SECONDS:
        raise ApiError(
            400,
            "invalid_field",
            f"min_interval_seconds: must be between 0 and {MAX_MIN_INTERVAL_SECONDS}, got {gap}",
            field="min_interval_seconds",
        )
    zone = q.get("time_zone")
    if zone is None:
        pool = await get_pool(settings.postgres_dsn)
        async with pool.acquire() as conn:
            try:
                zone = (await fetch_organization(conn, org)).time_zone
            except UnknownOrganizationError as exc:
                raise ApiError(404, "not_found", str(exc), field="organization_id") from None
    try:
        check_time_zone(zone)
    except ValueError as exc:
        raise ApiError(400, "invalid_field", str(exc), field="time_zone") from None
    try:
        if not 1 <= count <= MAX_PREVIEW:
            raise ValueError(f"count: must be between 1 and {MAX_PREVIEW}")
        times, complete = spaced(fire_times(q["cron"], zone, datetime.now(UTC)), gap, count)
    except CronExpressionError as exc:
        raise ApiError(400, "invalid_field", str(exc), field="cron") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_field", str(exc), field="count") from None
    return json_response(
        {
            "time_zone": zone,
            "min_interval_seconds": gap,
            "fire_times": [t.isoformat() for t in times],
            # False: fewer than count listed within the bounds of one answer (fire times to
            # 2099, SPACED_SCAN_LIMIT read, SPACED_BUDGET_S spent); ask from a later time
            "complete": complete,
        }
    )


_PREVIEW_QUERY = frozenset({"cron", "time_zone", "count", "min_interval_seconds"})
MAX_PREVIEW = 1000
"""Most fire times one preview lists."""

SPACED_SCAN_LIMIT = 10_000
"""Most cron fire times :func:`spaced` reads for one answer (a ``* * * * *`` spaced by 31 days
would otherwise read 44,640 a fire time on the event loop)."""

SPACED_BUDGET_S = 0.05
"""Most seconds of the event loop :func:`spaced` spends on one answer: a rare expression
(``0 0 * 2 1#5``, fifth Mondays of February, every ~28 years) costs milliseconds a fire time,
and an attacker round's previews of 1,000 of them held every tenant's requests for 2.5 s."""

LIST_BUDGET_S = 0.05
"""Most seconds one list of schedules spends on their upcoming fire times together."""

UPCOMING_BUDGET_S = 0.005
"""Most seconds spent on one schedule's upcoming fire times in an answer (a list of an
organisation's 100 schedules of rare expressions took 3.3 s of the event loop for 30)."""

LAST_FIRE = datetime(2100, 1, 1, tzinfo=UTC)
"""Fire times from here on are not listed: a report covers dates up to 2099 (an attacker
round's preview listed fire times up to the year 9988)."""


def spaced(
    times: Iterable[datetime],
    gap_s: int,
    count: int,
    previous: datetime | None = None,
    budget_s: float = SPACED_BUDGET_S,
) -> tuple[list[datetime], bool]:
    """The first ``count`` of ``times`` that are each at least ``gap_s`` seconds after the
    one kept before (``previous`` first, when given), and whether that is all of them.

    Reads at most :data:`SPACED_SCAN_LIMIT` of ``times`` within ``budget_s`` seconds, before
    :data:`LAST_FIRE`; the answer is *complete* when it holds ``count`` times or
    ``times`` ended (or reached :data:`LAST_FIRE`) before either bound.
    """
    out: list[datetime] = []
    deadline = time.monotonic() + budget_s
    for n, t in enumerate(times):
        if t >= LAST_FIRE:
            return out, True
        if n >= SPACED_SCAN_LIMIT or time.monotonic() > deadline:
            return out, False
        if previous is not None and (t - previous).total_seconds() < gap_s:
            continue
        out.append(t)
        previous = t
        if len(out) == count:
            return out, True
    return out, True


def _int_query(request: web.Request, name: str, default: int) -> int:
    """The integer query parameter ``name`` (``default`` when absent); 400 naming it else."""
    raw = request.query.get(name)
    if raw is None:
        return default
    return ascii_int(raw, name)


async def _one(org: str, schedule_id: str) -> store.StoredSchedule:
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        try:
            return await store.get_schedule(conn, org, schedule_id)
        except store.ScheduleNotFoundError as exc:
            raise ApiError(404, "not_found", str(exc), field="path.schedule_id") from None


@page("/orgs/{org}/schedules/{schedule_id}", permission=Permission.SCHEDULES_MANAGE)
async def get_schedule(
    self: Any, request: web.Request, org: str, schedule_id: str
) -> web.StreamResponse:
    """One schedule with its next fire times."""
    authenticate(request, settings.jwt_secret, org)
    stored = await _one(org, schedule_id)
    return json_response(
        schedule_to_json(
            stored, _upcoming(stored.schedule, datetime.now(UTC), stored.last_fire_time)
        )
    )


@page("/orgs/{org}/schedules/{schedule_id}", method="put", permission=Permission.SCHEDULES_MANAGE)
async def replace_schedule(
    self: Any, request: web.Request, org: str, schedule_id: str
) -> web.StreamResponse:
    """Replace a schedule's definition (its id stays)."""
    return await _save(request, org, schedule_id)


@page(
    "/orgs/{org}/schedules/{schedule_id}", method="delete", permission=Permission.SCHEDULES_MANAGE
)
async def delete_schedule(
    self: Any, request: web.Request, org: str, schedule_id: str
) -> web.StreamResponse:
    """Delete a schedule (its delivery log is kept)."""
    principal = authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        if not await store.delete_schedule(conn, org, schedule_id):
            raise ApiError(
                404,
                "not_found",
                f"schedule_id: {schedule_id!r} does not exist",
                field="path.schedule_id",
            )
        await audit_events.record(conn, org, principal.user_id, "schedule.deleted", schedule_id)
    return json_response({"schedule_id": schedule_id, "deleted": True})


async def _set_paused(
    request: web.Request, org: str, schedule_id: str, pause: bool
) -> web.Response:
    principal = authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        try:
            if pause:
                await store.pause_schedule(conn, org, schedule_id, now)
            else:
                await store.resume_schedule(conn, org, schedule_id, now)
        except store.ScheduleNotFoundError as exc:
            raise ApiError(404, "not_found", str(exc), field="path.schedule_id") from None
        # recorded right after (not in the change's transaction: the store function runs
        # three tenant transactions, which do not nest in one outer transaction)
        async with tenant_transaction(conn, org):
            action = "schedule.paused" if pause else "schedule.resumed"
            await audit_events.record(conn, org, principal.user_id, action, schedule_id)
        stored = await store.get_schedule(conn, org, schedule_id)
    return json_response(
        schedule_to_json(stored, _upcoming(stored.schedule, now, stored.last_fire_time))
    )


@page(
    "/orgs/{org}/schedules/{schedule_id}/pause",
    method="post",
    permission=Permission.SCHEDULES_MANAGE,
)
async def pause(self: Any, request: web.Request, org: str, schedule_id: str) -> web.StreamResponse:
    """Pause a schedule: it stops firing until resumed."""
    return await _set_paused(request, org, schedule_id, True)


@page(
    "/orgs/{org}/schedules/{schedule_id}/resume",
    method="post",
    permission=Permission.SCHEDULES_MANAGE,
)
async def resume(self: Any, request: web.Request, org: str, schedule_id: str) -> web.StreamResponse:
    """Resume a schedule; the paused period is not caught up."""
    return await _set_paused(request, org, schedule_id, False)


@page("/orgs/{org}/schedules/{schedule_id}/runs", permission=Permission.DELIVERIES_READ)
async def runs(self: Any, request: web.Request, org: str, schedule_id: str) -> web.StreamResponse:
    """The latest runs of a schedule and every delivery attempt."""
    authenticate(request, settings.jwt_secret, org)
    await _one(org, schedule_id)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        found = await store.list_runs(conn, org, schedule_id)
        log = await fetch_schedule_log(conn, org, schedule_id)
        pending = await pending_by_run(conn, org, [r.run_id for r in found])
        links = await links_of_reports(conn, org, [p.report_id for r in found for p in r.reports])
    return json_response(
        {
            "runs": [
                {
                    "run_id": r.run_id,
                    "fire_time": r.fire_time.isoformat(),
                    "missed_from": r.missed_from.isoformat(),
                    "status": r.status,
                    "error": r.error,
                    "claimed_by": r.claimed_by,
                    "date_from": r.date_from.isoformat(),
                    "date_to": r.date_to.isoformat(),
                    "report_ids": [p.report_id for p in r.reports],
                    "pending_deliveries": pending.get(r.run_id, []),
                    "next_attempt_at": min(
                        (str(q["due_at"]) for q in pending.get(r.run_id, [])), default=None
                    ),
                    "links": [
                        {"report_id": p.report_id, **link}
                        for p in r.reports
                        for link in links.get(p.report_id, [])
                        if link["run_id"] == r.run_id
                    ],
                }
                for r in found
            ],
            "deliveries": [msgspec.to_builtins(entry) for entry in log],
        }
    )


@page("/downloads/{token}", permission=PUBLIC)
async def download(self: Any, request: web.Request, token: str) -> web.StreamResponse:
    """A file behind a signed, expiring, revocable link; every download is audited.

    The link is a bearer credential, limited like a token: its downloads and its
    organisation's links' count in the ``downloads`` rate class (429; the organisation's
    links have a budget apart from its staff's downloads), and an invalid one (forged,
    expired, revoked) counts as a bad token from the client's address (its lockout, 429)
    and spends no budget. A valid link whose file was removed (a GDPR erasure, the
    retention rule) is a 404 ``not_found`` after its budget is counted, not a bad token
    (an attacker round: twenty clicks on such links locked the address out for every
    tenant).
    """
    from stream_app.agents.delivery import config

    client = request.remote or "unknown"
    await ratelimit.check_not_locked_out(client)
    pool = await get_pool(settings.postgres_dsn)
    try:
        claims = config.signer.verify(token, now=datetime.now(UTC))
        async with pool.acquire() as conn:
            await check_not_revoked(conn, claims)
    except LinkError as exc:
        await ratelimit.record_auth_failure(client)
        raise ApiError(403, "invalid_link", str(exc), field="token") from None
    except LinkTargetGoneError as exc:  # a genuine link whose organisation is gone
        raise ApiError(404, "not_found", str(exc), field="token") from None
    # counted once the link is known good: a revoked or forged one spends no budget of its
    # organisation (it counts toward its address's lockout instead)
    await ratelimit.check_link_download(claims.organization_id, claims.link_id)
    try:
        resolve_download(settings.artifact_dir, claims)
    except LinkError as exc:  # a path out of the store: not a file this link may name
        await ratelimit.record_auth_failure(client)
        raise ApiError(403, "invalid_link", str(exc), field="token") from None
    except LinkTargetGoneError as exc:
        raise ApiError(404, "not_found", str(exc), field="token") from None
    async with pool.acquire() as conn, tenant_transaction(conn, claims.organization_id):
        await audit(
            conn,
            claims.organization_id,
            f"link:{claims.link_id}",
            "link.downloaded",
            claims.report_id,
            {"schedule_id": claims.schedule_id, "path": claims.path, "link_id": claims.link_id},
        )
    keys = await get_keyring(settings.postgres_dsn)
    reader = await open_for_download(
        settings.artifact_dir, claims.organization_id, claims.path, keys
    )
    return await stream_artifact(request, reader, {"Content-Type": media_type(reader.path)})


@page(
    "/orgs/{org}/reports/{report_id}/links/revoke",
    method="post",
    permission=Permission.SCHEDULES_MANAGE,
)
async def revoke_report_links(
    self: Any, request: web.Request, org: str, report_id: str
) -> web.StreamResponse:
    """Revoke every download link of a report issued until now (404 for an unknown report)."""
    principal = authenticate(request, settings.jwt_secret, org)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        if await report_db.fetch_report(conn, org, report_id) is None:
            raise report_not_found(report_id)
        revoked_at = await revoke(conn, org, "report", report_id, actor=principal.user_id)
        await audit(conn, org, principal.user_id, "links.revoked", report_id, {"scope": "report"})
    return json_response({"report_id": report_id, "links_revoked_before": revoked_at.isoformat()})


@page(
    "/orgs/{org}/schedules/{schedule_id}/links/revoke",
    method="post",
    permission=Permission.SCHEDULES_MANAGE,
)
async def revoke_schedule_links(
    self: Any, request: web.Request, org: str, schedule_id: str
) -> web.StreamResponse:
    """Revoke every download link a schedule handed out until now (404 for an unknown one)."""
    principal = authenticate(request, settings.jwt_secret, org)
    await _one(org, schedule_id)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn, tenant_transaction(conn, org):
        revoked_at = await revoke(conn, org, "schedule", schedule_id, actor=principal.user_id)
        await audit(
            conn, org, principal.user_id, "links.revoked", schedule_id, {"scope": "schedule"}
        )
    return json_response(
        {"schedule_id": schedule_id, "links_revoked_before": revoked_at.isoformat()}
    )
