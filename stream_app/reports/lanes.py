"""The priority lanes: claim one accepted request and answer it.

Part of the reports layer, run by the lane agents (:mod:`stream_app.agents.reports`). Each
priority has its own topic ``report-requests-<priority>`` read by its own agent with its own
concurrency (:attr:`Settings.report_lane_concurrency`), so a ``critical`` report never waits
behind ``low`` ones: they are different partitions read by different actors, and a backlog of
one lane is invisible to the others. Why topics, not an in-process priority queue: the lanes
keep everything a Kafka topic gives (a request survives a crash, lanes scale out with
partitions and workers, a lane's lag is visible). The lane key is
``organization_id/<cache key>``, so identical requests meet on one worker (single flight) and
land where their key's cache table partition lives (:mod:`stream_app.reports.cache`).

A lane claims the report (``queued → processing`` in PostgreSQL, so a redelivered request is
generated once), publishes ``processing`` and answers it
(:func:`stream_app.reports.produce.produce`) under a watchdog
(:mod:`stream_app.reports.watchdog`). An organisation holds at most its share
(``WEDDING_ORG_SLOT_SHARE``) of a lane's concurrency on a worker, and, while another
organisation has reports running or waiting on the worker, generates at most
``WEDDING_ORG_REPORTS`` at once there across all lanes (so its critical report may wait for
one of its own low ones; another tenant's never waits for it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping

import orjson
from faust.types import EventT

from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.app import settings
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import tenant_transaction
from stream_app.observability import REPORT_LANE_ORG_HELD, REPORT_LANE_ORGS, REPORT_ORG_HELD
from stream_app.quotas import org_share
from stream_app.reports.cancel import tracked
from stream_app.reports.errors import ReportCancelledError, is_retriable
from stream_app.reports.produce import discard_files, finished_elsewhere, produce
from stream_app.reports.status import audit_status, publish_status, report_status
from stream_app.reports.timing import Run
from stream_app.reports.watchdog import REPORT_STALE_AFTER_S, watch_report
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import ReportStatusName
from stream_app.topology import report_lane_topics

log = logging.getLogger(__name__)

TAKEOVER_RECHECK_S = 2.0
"""Pause before a request whose report is ``processing`` elsewhere goes back to its lane to
be looked at again (until it is final, or stale and taken over)."""
QUOTA_REQUEUE_DELAY_S = 0.5
"""Pause before a request over its organisation's share goes back to its lane, once every
:data:`QUOTA_REQUEUE_BURST` such returns in a row (so a lane holding only one tenant's backlog
does not spin)."""
QUOTA_REQUEUE_BURST = 20
"""Requests over their organisation's share that go back to the lane at once, one after the
other, before one waits :data:`QUOTA_REQUEUE_DELAY_S`. A pause on every return made another
tenant's request wait behind a flooding tenant's whole backlog at 0.5 s a request (an
attacker's 118 queued reports held another tenant's for 28-80 s); any claim starts the count
again."""
REQUEUED_BY = "wedding.requeued-by"
"""Header of a request a worker put back in its lane: the app id (consumer group) that did.
Only workers of that group take the copy; every group reads the original. Without it, two
apps reading the same lane topics each put back the other's copies too, and the copies
doubled at every round (2,018,424 messages in one lane in a CI run)."""
_requeued_in_a_row: dict[str, int] = {}
"""priority → requests over their share sent back since this worker's lane last claimed one."""
_lane_held: dict[tuple[str, str], int] = {}
"""(priority, organization_id) → lane slots of this worker it holds now."""
_org_held: dict[str, int] = {}
"""organization_id → reports this worker generates for it now, all lanes together."""
_last_seen: dict[str, float] = {}
"""organization_id → when (monotonic) this worker last generated a report of it, sent one of
its requests back to its lane over a share, or found one being generated elsewhere
(forgotten after :data:`OTHERS_ACTIVE_S`)."""
OTHERS_ACTIVE_S = 60.0
"""How long an organisation counts as active on this worker after its last report here (or
its last request waiting for a slot): while another is, an organisation is held to
``WEDDING_ORG_REPORTS`` at once."""


def _others_active(org: str, now: float) -> bool:
    """Whether another organisation than ``org`` generates a report on this worker now, or
    had one generated or waiting for a slot here within :data:`OTHERS_ACTIVE_S` (old entries
    dropped; requests already final, such as those a new consumer group reads again, never
    count)."""
    for other, seen in list(_last_seen.items()):
        if now - seen > OTHERS_ACTIVE_S and not _org_held.get(other):
            del _last_seen[other]
    return any(other != org for other in _last_seen) or any(o != org for o in _org_held)


CLAIMER = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
"""This worker process, as recorded in a claimed report's ``claimed_by``."""
_orphaned: dict[tuple[str, str], float] = {}
"""(organization_id, report_id) → when a try of this worker that had claimed the report
ended with a transient error (a PostgreSQL restart while it was finishing): the lane agent
tries the request again (:mod:`stream_app.transient`), and that try takes the claim back at
once (:func:`stream_app.db.reports.reclaim_own`: while no other worker took it over) instead of
waiting :data:`REPORT_STALE_AFTER_S` for it to look abandoned."""


async def handle_lane_request(event: EventT[bytes]) -> ReportStatusName | None:
    """Lane: claim one request and answer it; the final status, None when not claimed.

    An organisation holds at most its share (``WEDDING_ORG_SLOT_SHARE``) of the lane's
    concurrency on this worker, and, while another organisation's reports run or wait here
    (:func:`_others_active`), at most ``WEDDING_ORG_REPORTS`` slots of all lanes; a request
    over either goes back to the end of its lane at once (a pause every
    :data:`QUOTA_REQUEUE_BURST` in a row), marked as this app's copy.
    """
    started = time.perf_counter()
    if not _ours(event):
        return None  # a copy another app put back in the lane: that app's to take
    try:
        req = decode_event(event.message.value or b"", ReportRequest)
    except EventValidationError as exc:  # accepted requests are valid: only a foreign producer
        await send_to_dead_letter(event, field=exc.field, reason=exc.reason)
        return None
    share = (req.priority, req.organization_id)
    org = req.organization_id
    now = time.monotonic()
    # the cap across lanes holds while another tenant is active here: a tenant alone on the
    # worker keeps every lane's share (a single tenant's burst of 1,000 reports ran several
    # times slower under a cap of two, its requests cycling through the lanes)
    capped = _org_held.get(org, 0) >= settings.org_reports and _others_active(org, now)
    if capped or _lane_held.get(share, 0) >= org_share(
        settings.report_lane_concurrency[req.priority], settings.org_slot_share
    ):
        _last_seen[org] = now  # it waits for a slot here: active
        # the organisation holds its share of this lane here: back to the end of the lane,
        # so this slot takes the next request (maybe another tenant's) instead of waiting
        in_a_row = _requeued_in_a_row.get(req.priority, 0) + 1
        _requeued_in_a_row[req.priority] = in_a_row
        pause = QUOTA_REQUEUE_DELAY_S if in_a_row % QUOTA_REQUEUE_BURST == 0 else 0.0
        await _back_to_lane(req, event, pause)
        return None
    _requeued_in_a_row[req.priority] = 0
    _lane_held[share] = _lane_held.get(share, 0) + 1
    _org_held[org] = _org_held.get(org, 0) + 1
    _publish_lane_shares(req.priority)
    try:
        outcome = await _claim_and_produce(req, event, started)
        if outcome is not None:  # generated here (not final before, nor claimed elsewhere)
            _last_seen[org] = time.monotonic()
        return outcome
    finally:
        _lane_held[share] -= 1
        if _lane_held[share] == 0:
            del _lane_held[share]
        _org_held[org] -= 1
        if _org_held[org] == 0:
            del _org_held[org]
        _publish_lane_shares(req.priority)


def _publish_lane_shares(lane: str) -> None:
    held = [n for (p, _), n in _lane_held.items() if p == lane]
    REPORT_LANE_ORG_HELD.labels(lane).set(max(held, default=0))
    REPORT_LANE_ORGS.labels(lane).set(len(held))
    REPORT_ORG_HELD.set(max(_org_held.values(), default=0))


def _ours(event: EventT[bytes]) -> bool:
    """Whether this worker's app may take ``event``: an original request, or a copy this
    app put back (:data:`REQUEUED_BY`)."""
    raw = event.message.headers or []
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    for key, value in pairs:
        if key == REQUEUED_BY:
            return bool(value == settings.app_id.encode())
    return True


async def _back_to_lane(req: ReportRequest, event: EventT[bytes], delay_s: float) -> None:
    """After ``delay_s`` seconds, put ``event`` back at the end of its lane (same key), marked
    as this app's copy (:data:`REQUEUED_BY`)."""
    await asyncio.sleep(delay_s)
    fut = await report_lane_topics[req.priority].send(
        key=event.message.key,
        value=event.message.value,
        headers=[(REQUEUED_BY, settings.app_id.encode())],
    )
    await fut


async def _claim_and_produce(
    req: ReportRequest, event: EventT[bytes], started: float
) -> ReportStatusName | None:
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        stored = orjson.loads(event.message.value or b"")
        if await report_db.same_request(conn, req.organization_id, req.report_id, stored) is False:
            await send_to_dead_letter(
                event, field="$.report_id", reason="differs from the stored request of this id"
            )
            return None
    key = (req.organization_id, req.report_id)
    async with pool.acquire() as conn, tenant_transaction(conn, req.organization_id):
        # a claim this worker's earlier try left (it met a PostgreSQL restart) is taken back
        # at once while it is still this worker's (no other worker took the report over)
        claimed = key in _orphaned and await report_db.reclaim_own(
            conn, req.organization_id, req.report_id, CLAIMER
        )
        if not claimed:
            claimed = await report_db.claim_processing(
                conn,
                req.organization_id,
                req.report_id,
                stale_after_s=REPORT_STALE_AFTER_S,
                claimer=CLAIMER,
            )
            if claimed:
                await audit_status(conn, req, "processing")
            else:
                current = await report_db.current_status(conn, req.organization_id, req.report_id)
    _orphaned.pop(key, None)
    if not claimed:
        if current == "processing":
            # generating elsewhere, or its worker died (its offset was never committed, so
            # the request came back here): look again later; once the other worker's
            # heartbeat is older than REPORT_STALE_AFTER_S this worker takes the report over.
            # Its organisation is active (a worker of another app may generate it)
            _last_seen[req.organization_id] = time.monotonic()
            await _back_to_lane(req, event, TAKEOVER_RECHECK_S)
        return None  # cancelled or final: nothing to do
    try:
        await publish_status(report_status(req, "processing", started))
    except Exception:
        _orphaned[(req.organization_id, req.report_id)] = time.monotonic()
        raise
    run = Run()
    task = asyncio.create_task(produce(req, event, started, run))
    watchdog = asyncio.create_task(watch_report(req.organization_id, req.report_id, task, run.stop))
    try:
        with tracked(req.organization_id, req.report_id, task, run.stop):
            return await task
    except (asyncio.CancelledError, ReportCancelledError):
        me = asyncio.current_task()
        if me is not None and me.cancelling():  # the worker is stopping, not the report
            task.cancel()
            raise
        if not await finished_elsewhere(req):
            await discard_files(req)
        log.info("report %s cancelled while %s", req.report_id, "running")
        return "cancelled"
    except Exception as exc:
        if is_retriable(exc):  # tried again by the lane agent: the claim is still this one's
            _orphaned[(req.organization_id, req.report_id)] = time.monotonic()
        raise
    finally:
        watchdog.cancel()
