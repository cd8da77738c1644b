"""The router: a request that arrives on ``report-requests`` is accepted like any other.

Part of the reports layer, run by the router agent (:mod:`stream_app.agents.reports`). A
producer of ``report-requests`` (the ``wedding-engine report`` command, or any other) is one
entry of the one accept path (:mod:`stream_app.reports.accept`): the router validates the
message, checks its key, and calls :func:`~stream_app.reports.accept.accept` with the
``kafka`` channel. A malformed request is dead-lettered and, when its id and organisation can
be read, ends ``failed``; a request for an unknown organisation is dead-lettered naming
``$.organization_id`` and ends ``failed``; an id that
already names another request of the organisation is dead-lettered naming ``$.report_id``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from faust.types import EventT

from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.app import settings
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError
from stream_app.observability import REPORTS
from stream_app.reports.accept import NotPublishedError, ReportIdTakenError, accept, validate
from stream_app.reports.errors import is_retriable
from stream_app.reports.status import publish_status, report_status
from stream_app.schemas.base import EventValidationError
from stream_app.schemas.ids import is_valid_id
from stream_app.schemas.updates import ReportStatus, ReportStatusName


async def _fail_unreadable(event: EventT[bytes], exc: EventValidationError) -> None:
    """Dead-letter a malformed request; if its id and tenant are readable, mark it failed."""
    await send_to_dead_letter(event, field=exc.field, reason=exc.reason)
    try:
        doc = orjson.loads(event.message.value or b"")
        report_id, org = doc["report_id"], doc["organization_id"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return
    if not (is_valid_id(report_id) and is_valid_id(org)):
        return  # no status for an id that breaks the rule (`..`, `a/b`, ...)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        if await report_db.current_status(conn, org, report_id) is not None:
            return  # the id is an existing report's: a bad request must not end it
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


async def route_request(event: EventT[bytes]) -> ReportStatusName | None:
    """Router: validate the message and accept it (record, audit, publish, send to its lane).

    Returns ``queued`` when sent to a lane, ``failed`` when refused, None when dropped (a key
    that does not match, a redelivered request whose report is already final, or a request
    whose ``(organization_id, report_id)`` already names a different request: that one is
    dead-lettered naming ``$.report_id`` and the stored report is left as it is).

    Raises:
        NotPublishedError: recorded, but the lane could not be written (the recovery sweep
            sends the queued report round again).
        Exception: a transient error (:func:`~stream_app.reports.errors.is_retriable`:
            PostgreSQL away or restarting) before the request was recorded; handling the
            message again is safe (recording is idempotent for the same request).
    """
    started = time.perf_counter()
    raw = event.message.value or b""
    try:
        req = validate(raw)
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
    try:
        accepted = await accept(req, raw, channel="kafka", pool=pool)
    except ReportIdTakenError as exc:  # an id of this organisation re-used for another request
        await send_to_dead_letter(event, field="$.report_id", reason=str(exc))
        return None
    except NotPublishedError:
        raise
    except Exception as exc:  # recorded as the report's cause
        if is_retriable(exc):  # PostgreSQL restarting: the agent tries the request again
            raise
        if isinstance(exc, UnknownOrganizationError):
            # no tenant can read a status of an organisation that does not exist: the
            # request is kept where an operator looks, the dead-letter topic
            await send_to_dead_letter(event, field="$.organization_id", reason=str(exc))
            cause = str(exc)
        else:
            cause = f"cannot record request: {exc}"
        await publish_status(report_status(req, "failed", started, error=cause))
        REPORTS.labels(req.report_type, "failed").inc()
        return "failed"
    return "queued" if accepted.published else None
