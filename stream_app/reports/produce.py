"""One claimed report answered end to end: from the cache, from an identical running one, or
generated; then ``completed`` or ``failed`` in PostgreSQL, the audit log and on Kafka.

Part of the reports layer. Completion is conditional on ``processing`` in PostgreSQL, so a
cancel (or a takeover by another worker) racing a completion has one winner; a report that
lost the race deletes its files unless another worker finished it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import orjson
from faust.types import EventT

from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.app import settings
from stream_app.crypto.keyring import get_keyring
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import tenant_transaction
from stream_app.observability import REPORT_CACHE, REPORT_SECONDS, REPORTS
from stream_app.reports import cache, registry
from stream_app.reports.artifacts import ArtifactPathError, remove_report_folder
from stream_app.reports.cache import CacheEntry
from stream_app.reports.errors import ReportCancelledError, cause_text, is_retriable
from stream_app.reports.generate import generate_with_retries, report_metadata
from stream_app.reports.memory import tracer
from stream_app.reports.status import audit_status, publish_status, report_status
from stream_app.reports.timing import Run, performance
from stream_app.reports.types.base import CACHE_TTL_S
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import CacheInfo, CacheLevel, ReportStatus, ReportStatusName
from stream_app.transient import retry_transient

log = logging.getLogger(__name__)


async def finished_elsewhere(req: ReportRequest) -> bool:
    """Whether ``req``'s report ended ``completed`` or ``failed`` by another worker's hand (one
    that took it over after this worker's heartbeat went stale): its files are then that
    worker's, not to be deleted here. True too when PostgreSQL cannot be read (keep files)."""
    try:
        pool = await get_pool(settings.postgres_dsn)
        async with pool.acquire() as conn:
            current = await report_db.current_status(conn, req.organization_id, req.report_id)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return True
    return current in ("completed", "failed")


async def discard_files(req: ReportRequest) -> None:
    """Delete the files of ``req``'s report: its own folder ``<store>/<org>/<report_id>`` only
    (:func:`~stream_app.reports.artifacts.remove_report_folder` refuses anything else)."""
    try:
        await asyncio.to_thread(
            remove_report_folder, settings.artifact_dir, req.organization_id, req.report_id
        )
    except (ArtifactPathError, OSError) as exc:
        log.error("report %s/%s: files not deleted: %s", req.organization_id, req.report_id, exc)


async def produce(
    req: ReportRequest, event: EventT[bytes], started: float, run: Run
) -> ReportStatusName:
    """Answer one claimed request: from the cache, from a running identical one, or generated."""
    rtype = registry.get(req.report_type)
    key = cache.cache_key(req)
    ttl = CACHE_TTL_S[rtype.cache_class]
    pool = await get_pool(settings.postgres_dsn)
    token = tracer.begin()
    peak = 0
    try:
        async with pool.acquire() as conn:
            versions = await run.timed(
                cache.current_versions(conn, req.organization_id, rtype.reads)
            )
            hit = None
            if req.cache_strategy == "use_cache":
                hit = await run.timed(cache.lookup(conn, req, key, versions, ttl))
        level: CacheLevel
        if hit is not None:
            entry, level = hit
        else:
            late_hit: list[CacheEntry] = []

            async def produce_entry() -> CacheEntry:
                if req.cache_strategy == "use_cache":
                    done = cache.fresh_in_l1(key, versions)
                    if done is not None:
                        late_hit.append(done)
                        return done
                links = await generate_with_retries(req, run)
                now = datetime.now(UTC)
                made = CacheEntry(
                    key=key,
                    organization_id=req.organization_id,
                    report_id=req.report_id,
                    report_type=req.report_type,
                    artifacts=links,
                    generated_at=now,
                    expires_at=now + timedelta(seconds=ttl),
                    data_versions=versions,
                    metadata=report_metadata(req, versions),
                )
                if req.cache_strategy != "skip":
                    cache.remember(made)  # before the flight is released: no second generation
                return made

            if req.cache_strategy == "use_cache":
                # one flight per key *and* data versions: a request that saw newer data
                # does not join a generation that started before the change
                flight = f"{key}@{orjson.dumps(versions, option=orjson.OPT_SORT_KEYS).decode()}"
                entry, leader = await cache.single_flight.run(flight, produce_entry)
                level = "miss" if leader else "in_flight"
                if late_hit:
                    hit = (entry, "l1")
                    level = "l1"
                    REPORT_CACHE.labels("l1", "hit").inc()
                elif not leader:
                    REPORT_CACHE.labels("in_flight", "hit").inc()
            else:
                entry = await produce_entry()
                level = "miss" if req.cache_strategy == "refresh" else "skipped"
        if entry.report_id == req.report_id:
            links = entry.artifacts
        else:
            links = await cache.materialize(
                entry,
                req.organization_id,
                req.report_id,
                await get_keyring(settings.postgres_dsn),
            )
    except Exception as exc:
        peak = tracer.end(token)
        token = -1
        if isinstance(exc, ReportCancelledError):
            raise
        return await fail(req, event, started, exc, run, peak)
    finally:
        if token >= 0:
            peak = tracer.end(token)
    age = max(0.0, (datetime.now(UTC) - entry.generated_at).total_seconds()) if hit else 0.0
    info = CacheInfo(
        level=level,
        key=key,
        age_s=round(age, 3),
        source_report_id=None if entry.report_id == req.report_id else entry.report_id,
    )
    status = report_status(
        req,
        "completed",
        started,
        artifacts=links,
        attempts=run.attempts,
        generated_at=entry.generated_at,
        data_size_bytes=sum(a.size_bytes for a in links),
        data_rows=max((a.rows for a in links), default=0),
        metadata=entry.metadata,
        cache=info,
        performance=performance(run, started, peak),
    )
    async with pool.acquire() as conn, tenant_transaction(conn, req.organization_id):
        moved = await report_db.set_status(
            conn,
            req.organization_id,
            req.report_id,
            "completed",
            artifacts=[msgspec.to_builtins(a) for a in links],
            processing_ms=status.processing_ms,
            only_from=["processing"],
            cache=msgspec.to_builtins(info),
            data_versions=entry.data_versions,
            performance=msgspec.to_builtins(status.performance),
            metadata=entry.metadata,
            generated_at=entry.generated_at,
            data_size_bytes=status.data_size_bytes,
            data_rows=status.data_rows,
        )
        if moved:
            formats = [a.format for a in links]
            await audit_status(conn, req, "completed", formats=formats, attempts=run.attempts)
    if not moved:  # cancelled meanwhile (its canceller published 'cancelled'), or taken over
        if level == "miss":
            cache.forget(entry)
        if not await finished_elsewhere(req):
            await discard_files(req)
        raise ReportCancelledError(req.report_id)
    if level == "miss":
        await cache.store(entry)
    await publish_final(status)
    REPORTS.labels(req.report_type, "completed").inc()
    REPORT_SECONDS.labels(req.report_type).observe(time.perf_counter() - started)
    return "completed"


async def publish_final(status: ReportStatus) -> None:
    """Publish a final status, again while the broker is away (:func:`retry_transient`): the
    row is already final, so a request tried again would stop at its claim and the status,
    which queues the report's deliveries, would never reach ``report-results`` (an attacker's
    round, read in the code)."""
    await retry_transient(
        lambda: publish_status(status), f"report {status.report_id}: publishing {status.status}"
    )


async def fail(
    req: ReportRequest,
    event: EventT[bytes],
    started: float,
    exc: BaseException,
    run: Run,
    peak: int,
) -> ReportStatusName:
    """End a report ``failed`` with its cause; dead-letter it after exhausted retries."""
    cause = cause_text(exc)
    exhausted = is_retriable(exc)
    if exhausted:
        cause = f"failed after {run.attempts} attempts: {cause}"
    status = report_status(
        req,
        "failed",
        started,
        error=cause,
        attempts=run.attempts,
        performance=performance(run, started, peak),
    )
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn, tenant_transaction(conn, req.organization_id):
        moved = await report_db.set_status(
            conn,
            req.organization_id,
            req.report_id,
            "failed",
            error=cause,
            processing_ms=status.processing_ms,
            only_from=["processing"],
            performance=msgspec.to_builtins(status.performance),
        )
        if moved:
            await audit_status(conn, req, "failed", attempts=run.attempts)
    if not moved:
        raise ReportCancelledError(req.report_id)
    await discard_files(req)
    if exhausted:
        await send_to_dead_letter(event, field="$", reason=cause)
    await publish_final(status)
    REPORTS.labels(req.report_type, "failed").inc()
    return "failed"
