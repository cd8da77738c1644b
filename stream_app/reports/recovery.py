"""Reports left behind by a fault are sent round again.

Two ways a report can be left behind (both seen by ``loadtests/soak.py``):

- **processing, its worker gone**: the worker died or was paused in the middle; the request's
  lane offset may already be committed, so nothing brings the request back. A running report
  refreshes its heartbeat (``updated_at``) every :data:`~stream_app.reports.watchdog.HEARTBEAT_S`;
  one whose heartbeat is older than :data:`~stream_app.reports.watchdog.REPORT_STALE_AFTER_S`
  is stalled.
- **queued, its request never routed**: the HTTP API recorded the request, then the broker
  went away before the request reached its lane (``routed_at`` is set once Kafka acknowledged
  the lane's copy). A report ``queued`` and not routed for longer than :data:`QUEUED_STALE_S`
  is stalled. A routed one is waiting its turn in a durable lane (behind a tenant's flood,
  maybe for minutes) and is left alone until :data:`ROUTED_STALE_S`, a safety horizon: sending
  every request queued 30 s again turned an attacker's 400 requests into 861 lane messages and
  held the other tenants' reports 5-20 s longer.

Every :data:`SWEEP_INTERVAL_S` each worker takes a few stalled reports (``FOR UPDATE SKIP
LOCKED``, through the cross-tenant system login: finding them spans tenants, nothing else
does) and produces each one's stored request again, to its priority lane (keyed by its
cache key, as the router does; straight to ``report-requests`` for a row without a cache
key), so the router does not announce ``queued`` a second time. The lanes make that safe:
the request is the stored one (same id, same body), a report is
claimed by one worker at a time (:func:`stream_app.db.reports.claim_processing`, which takes
a ``processing`` report over only once its heartbeat is stale), and a final report is never
generated again. A ``queued`` report's ``updated_at`` is moved on when it is sent round, so it
is sent at most once per :data:`QUEUED_STALE_S`.

Each report of a sweep is sent on its own: one that Kafka refuses for good (a request larger
than the broker takes, :func:`~stream_app.reports.accept.refused_for_size`) is marked
``failed`` with the cause and the others are still sent; one the broker could not take now
(away, no acknowledgement) stays stalled for the next sweep, and the rest of the batch waits
for it too (the broker is most likely away for all).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg
import orjson

from stream_app.app import app, settings
from stream_app.db import audit_events
from stream_app.db.pool import get_system_pool
from stream_app.reports.accept import kafka_cause, refused_for_size
from stream_app.reports.audit_details import REPORT_AGENT_ACTOR, status_details
from stream_app.reports.cache import message_key
from stream_app.reports.status import Send, worker_send
from stream_app.reports.watchdog import REPORT_STALE_AFTER_S
from stream_app.topology import report_lane_topics, report_requests_topic

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 10.0
"""Seconds between two looks for stalled reports (per worker)."""
QUEUED_STALE_S = 30.0
"""A report ``queued`` this long without being claimed is sent round again."""
ROUTED_STALE_S = 120.0
"""A report queued this long after its request reached its lane is sent round again: the
lane's message can be dropped after all (its worker's claim failed while PostgreSQL or the
broker restarted; a deleted topic). 900 s lost a report of the CI soak for longer than the
soak waits (its PostgreSQL and broker restarts); 120 s re-sends a report waiting behind a
backlog once per 2 minutes instead of once per 30 s."""
SWEEP_BATCH = 50
"""The most stalled reports one sweep sends round."""


@dataclass(frozen=True, slots=True)
class StalledReport:
    """A report to send round again: its tenant, id, stored request (JSON bytes), priority
    lane and cache key (None for a row recorded before cache keys)."""

    organization_id: str
    report_id: str
    request: bytes
    priority: str
    cache_key: str | None


async def take_stalled(
    conn: asyncpg.Connection,
    *,
    processing_stale_s: float,
    queued_stale_s: float,
    routed_stale_s: float = ROUTED_STALE_S,
    limit: int,
) -> list[StalledReport]:
    """Stalled reports (module docstring) of every organisation, oldest first, at most
    ``limit``: ``processing`` with a heartbeat older than ``processing_stale_s`` seconds,
    ``queued`` and never routed for ``queued_stale_s``, ``queued`` and routed more than
    ``routed_stale_s`` ago. The ``queued`` ones taken have their ``updated_at`` set to now and
    ``routed_at`` cleared (set again once the sweep's copy is acknowledged). Runs on the
    system login (cross-tenant by design), inside the caller's transaction."""
    rows = await conn.fetch(
        "WITH stalled AS ("
        " SELECT organization_id, id FROM reports"
        " WHERE (status = 'processing' AND updated_at < now() - make_interval(secs => $1))"
        "    OR (status = 'queued' AND routed_at IS NULL"
        "        AND updated_at < now() - make_interval(secs => $2))"
        "    OR (status = 'queued' AND routed_at < now() - make_interval(secs => $4))"
        " ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " UPDATE reports r SET updated_at = CASE WHEN r.status = 'queued' THEN now()"
        "  ELSE r.updated_at END,"
        " routed_at = CASE WHEN r.status = 'queued' THEN NULL ELSE r.routed_at END"
        " FROM stalled s WHERE r.organization_id = s.organization_id AND r.id = s.id"
        " RETURNING r.organization_id, r.id, r.request, r.priority, r.cache_key",
        processing_stale_s,
        queued_stale_s,
        limit,
        routed_stale_s,
    )
    out: list[StalledReport] = []
    for row in rows:
        request = row["request"]
        raw = request.encode() if isinstance(request, str) else orjson.dumps(request)
        key = row["cache_key"]
        out.append(
            StalledReport(
                str(row["organization_id"]),
                str(row["id"]),
                raw,
                str(row["priority"]),
                None if key is None else str(key),
            )
        )
    return out


async def sweep_once(pool: asyncpg.Pool | None = None, send: Send = worker_send) -> int:
    """Send the stalled reports round once; return how many were sent.

    Args:
        pool: the cross-tenant system login's pool (the worker's by default).
        send: the Kafka producer (the worker's by default).

    A report Kafka refuses for its size is marked ``failed`` (from ``queued`` or
    ``processing``) with the cause, and the sweep goes on with the next one.

    Raises:
        Exception: the producer's error for a report Kafka could not take now (the broker
            away): the reports not yet sent stay stalled for the next sweep.
    """
    if pool is None:
        pool = await get_system_pool(settings.postgres_system_dsn)
    async with pool.acquire() as conn, conn.transaction():
        stalled = await take_stalled(
            conn,
            processing_stale_s=REPORT_STALE_AFTER_S,
            queued_stale_s=QUEUED_STALE_S,
            limit=SWEEP_BATCH,
        )
    sent: list[StalledReport] = []
    try:
        for r in stalled:
            lane = report_lane_topics.get(r.priority)
            if lane is not None and r.cache_key:
                topic, key = lane.get_topic_name(), message_key(r.organization_id, r.cache_key)
            else:
                topic = report_requests_topic.get_topic_name()
                key = f"{r.organization_id}/{r.report_id}".encode()
            try:
                await send(topic, key, r.request)
            except Exception as exc:
                if not refused_for_size(exc):
                    raise
                await _refused(pool, r, f"{kafka_cause(exc)!r}")
                continue
            sent.append(r)
            log.warning(
                "report %s/%s stalled: its request is sent round again",
                r.organization_id,
                r.report_id,
            )
    finally:
        if sent:
            async with pool.acquire() as conn:  # in the lanes again: wait there, not sent again
                await conn.execute(
                    "UPDATE reports r SET routed_at = now()"
                    " FROM unnest($1::text[], $2::text[]) AS s(organization_id, id)"
                    " WHERE r.organization_id = s.organization_id AND r.id = s.id"
                    " AND r.status = 'queued'",
                    [r.organization_id for r in sent],
                    [r.report_id for r in sent],
                )
    return len(sent)


async def _refused(pool: asyncpg.Pool, r: StalledReport, cause: str) -> None:
    """Mark ``r`` failed (from ``queued`` or ``processing``) and audit it: Kafka refuses its
    request for good, so sending it round again every sweep would only fail again."""
    error = f"could not enqueue: kafka refused the report request ({cause})"
    async with pool.acquire() as conn, conn.transaction():  # the audit row commits with it
        report_type = await conn.fetchval(
            "UPDATE reports SET status = 'failed', error = $3, updated_at = now()"
            " WHERE organization_id = $1 AND id = $2 AND status IN ('queued', 'processing')"
            " RETURNING report_type",
            r.organization_id,
            r.report_id,
            error,
        )
        if report_type is not None:
            await audit_events.record(
                conn,
                r.organization_id,
                REPORT_AGENT_ACTOR,
                "report.status",
                r.report_id,
                status_details("failed", str(report_type)),
                outcome="failed",
            )
    log.warning(
        "report %s/%s stalled and its request is refused by kafka: marked failed (%s)",
        r.organization_id,
        r.report_id,
        cause,
    )


@app.task  # type: ignore[untyped-decorator]
async def recover_stalled_reports() -> None:
    """Sweep every :data:`SWEEP_INTERVAL_S` until the worker stops; a sweep that fails (the
    database or the broker away) is logged and tried again at the next interval."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await sweep_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a fault the next sweep outlives
            log.warning("stalled reports: sweep failed: %s", exc)
