"""The report agent: ``report-requests`` in; artifacts and status changes out.

For each request: validate it (a malformed request is dead-lettered and, when its id and
organisation can be read, ends ``failed`` with the cause), record it in PostgreSQL as
``queued`` (a request whose id already reached a final status is not generated again: a
redelivered request is ignored), move it to ``processing``, read the organisation and venues
from PostgreSQL and the figures from the bookings table (from this worker, or over HTTP from
the worker that holds a venue's partition), render each requested format in a worker thread (so live
metrics keep flowing), store the files with SHA-256 and size, and end ``completed`` with the
links, or ``failed`` with the cause. Every status change is published on
``realtime-metrics-updates`` and ``report-results``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson
from faust.types import EventT

from stream_app.agents.context import outside_any_event
from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.app import app, settings
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError, fetch_organization, fetch_venues
from stream_app.observability import REPORT_SECONDS, REPORTS
from stream_app.reports import booking_summary, registry
from stream_app.reports.artifacts import ArtifactStore
from stream_app.reports.model import ReportTable
from stream_app.reports.registry import ReportContext, ReportInputError
from stream_app.reports.render import RENDERERS
from stream_app.schemas.base import EventValidationError, decode_event, encode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import ArtifactLink, ReportStatus, ReportStatusName
from stream_app.tables.bookings import table_key
from stream_app.topics import REALTIME_METRICS_UPDATES, REPORT_REQUESTS, REPORT_RESULTS
from stream_app.web.errors import ApiError
from stream_app.web.routing import as_table_row, local_periods, owner_url, remote_periods

_raw: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
report_requests_topic = app.topic(REPORT_REQUESTS, partitions=settings.topic_partitions, **_raw)
report_results_topic = app.topic(REPORT_RESULTS, partitions=settings.topic_partitions, **_raw)
updates_topic = app.topic(REALTIME_METRICS_UPDATES, partitions=settings.topic_partitions, **_raw)

store = ArtifactStore(settings.artifact_dir)


class ReportFailure(Exception):
    """A report cannot be generated; the message is the cause shown to the user."""

    retriable = False


async def publish_status(status: ReportStatus) -> None:
    """Publish a status change on both status topics and wait for the broker's ack."""
    key = f"{status.organization_id}/{status.report_id}".encode()
    value = encode_event(status)
    futs = [
        await updates_topic.send(key=key, value=value),
        await report_results_topic.send(key=key, value=value),
    ]
    await asyncio.gather(*futs)


def _status(
    req: ReportRequest, status: ReportStatusName, started: float, **extra: Any
) -> ReportStatus:
    return ReportStatus(
        kind="report_status",
        report_id=req.report_id,
        organization_id=req.organization_id,
        report_type=req.report_type,
        status=status,
        at=datetime.now(UTC),
        processing_ms=(time.perf_counter() - started) * 1000,
        **extra,
    )


async def read_venue_rows(
    organization_id: str, venue_ids: list[str], date_from: date, date_to: date
) -> dict[str, dict[str, Any]]:
    """The table rows a booking summary of ``[date_from, date_to]`` needs, by table key.

    Rows of venues held by this worker come from its table; the others from the worker that
    holds them, over HTTP (:mod:`stream_app.web.routing`).

    Raises:
        ReportFailure: a holder of some venue's rows cannot be reached.
    """
    months = booking_summary.months_in(date_from, date_to)
    whole = [m for m, days in months if days is None]
    partial_days = [d.isoformat() for _, days in months if days for d in days]
    wanted: list[tuple[str, list[str]]] = [("month", whole), ("day", partial_days)]
    rows: dict[str, dict[str, Any]] = {}
    for venue_id in venue_ids:
        try:
            owner = owner_url(organization_id, venue_id)
            for grain, periods in wanted:
                if not periods:
                    continue
                if owner is None:
                    with outside_any_event():
                        found = local_periods(organization_id, venue_id, grain, periods)
                else:
                    found = await remote_periods(
                        owner, organization_id, venue_id, grain, periods[0], periods[-1]
                    )
                for p in found:
                    key = table_key(organization_id, venue_id, grain, p["period"])  # type: ignore[arg-type]
                    rows[key] = as_table_row(p)
        except ApiError as exc:
            raise ReportFailure(f"venue {venue_id!r}: {exc.reason}") from exc
    return rows


def _render_all(table: ReportTable, req: ReportRequest) -> list[ArtifactLink]:
    links: list[ArtifactLink] = []
    for fmt in req.output_formats:
        ext, render = RENDERERS[fmt]
        with store.write(req.organization_id, req.report_id, f"{req.report_type}.{ext}", fmt) as (
            writer,
            out,
        ):
            render(table, writer)
        links.extend(out)
    return links


async def generate(req: ReportRequest) -> list[ArtifactLink]:
    """Build and render the report of ``req``; return the stored artifacts.

    Raises:
        ReportFailure: the organisation is unknown, or the report type's builder refused the
            request (:class:`~stream_app.reports.registry.ReportInputError`).
    """
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        try:
            org = await fetch_organization(conn, req.organization_id)
        except UnknownOrganizationError as exc:
            raise ReportFailure(str(exc)) from exc
        venues = await fetch_venues(conn, req.organization_id)
    ctx = ReportContext(
        request=req, organization=org, venues=venues, pool=pool, read_venue_rows=read_venue_rows
    )
    try:
        table = await registry.get(req.report_type).build(ctx)
    except ReportInputError as exc:
        raise ReportFailure(str(exc)) from exc
    return await asyncio.to_thread(_render_all, table, req)


async def _fail_unreadable(event: EventT[bytes], exc: EventValidationError) -> None:
    """Dead-letter a malformed request; if its id and tenant are readable, mark it failed."""
    await send_to_dead_letter(event, field=exc.field, reason=exc.reason)
    try:
        doc = orjson.loads(event.message.value or b"")
        report_id, org = str(doc["report_id"]), str(doc["organization_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return
    status = ReportStatus(
        kind="report_status",
        report_id=report_id,
        organization_id=org,
        report_type=str(doc.get("report_type", "unknown")),
        status="failed",
        at=datetime.now(UTC),
        error=f"invalid request: {exc}",
    )
    await publish_status(status)
    REPORTS.labels(status.report_type, "failed").inc()


async def handle_report_request(event: EventT[bytes]) -> ReportStatusName | None:
    """Process one ``report-requests`` message; return the final status (None if dropped)."""
    started = time.perf_counter()
    try:
        req = decode_event(event.message.value or b"", ReportRequest)
    except EventValidationError as exc:
        await _fail_unreadable(event, exc)
        return "failed"
    expected_key = f"{req.organization_id}/{req.report_id}".encode()
    if event.message.key != expected_key:
        await send_to_dead_letter(
            event,
            field="key",
            reason=f"message key {event.message.key!r} does not match {expected_key!r}",
        )
        return None
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        try:
            is_new = await report_db.insert_queued(
                conn,
                report_id=req.report_id,
                organization_id=req.organization_id,
                user_id=req.user_id,
                report_type=req.report_type,
                request=orjson.loads(event.message.value or b"{}"),
            )
        except asyncpg.ForeignKeyViolationError:
            cause = f"organization_id: {req.organization_id!r} does not exist"
            status = _status(req, "failed", started, error=cause)
            await publish_status(status)
            REPORTS.labels(req.report_type, "failed").inc()
            return "failed"
        except Exception as exc:  # noqa: BLE001 - recorded as the report's cause
            status = _status(req, "failed", started, error=f"cannot record request: {exc}")
            await publish_status(status)
            REPORTS.labels(req.report_type, "failed").inc()
            return "failed"
        if is_new:
            await publish_status(_status(req, "queued", started))
        # a final report is not generated again; one in progress elsewhere is left to it
        if not await report_db.claim_processing(conn, req.report_id):
            return None  # another worker is generating it right now
    await publish_status(_status(req, "processing", started))
    try:
        links = await generate(req)
    except Exception as exc:  # noqa: BLE001 - any failure ends the report 'failed' with its cause
        cause = str(exc) if isinstance(exc, ReportFailure) else f"{type(exc).__name__}: {exc}"
        status = _status(req, "failed", started, error=cause)
        async with pool.acquire() as conn:
            await report_db.set_status(
                conn, req.report_id, "failed", error=cause, processing_ms=status.processing_ms
            )
        await publish_status(status)
        REPORTS.labels(req.report_type, "failed").inc()
        return "failed"
    status = _status(req, "completed", started, artifacts=links)
    async with pool.acquire() as conn:
        await report_db.set_status(
            conn,
            req.report_id,
            "completed",
            artifacts=[orjson.loads(encode_event(a)) for a in links],
            processing_ms=status.processing_ms,
        )
    await publish_status(status)
    REPORTS.labels(req.report_type, "completed").inc()
    REPORT_SECONDS.labels(req.report_type).observe(time.perf_counter() - started)
    return "completed"


@app.agent(report_requests_topic, concurrency=1)
async def report_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``report-requests`` for ever (see the module docstring)."""
    async for event in stream.events():  # type: ignore[attr-defined]
        await handle_report_request(event)
