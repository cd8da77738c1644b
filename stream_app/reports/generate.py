"""Generating one report's files: build the table, render every format, store the files.

Part of the reports layer. :func:`generate` is one attempt (organisation and venues from
PostgreSQL, the type's builder, the renderers in a worker thread, the files sealed into the
artifact store); :func:`generate_with_retries` makes up to :data:`RETRY_ATTEMPTS` attempts
for retriable causes (:func:`~stream_app.reports.errors.is_retriable`: tenacity, waits
``base``, ``2 × base``), each attempt and its error recorded in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from contextlib import AsyncExitStack
from datetime import date
from typing import Any, cast

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stream_app.app import settings
from stream_app.crypto.keyring import get_keyring
from stream_app.crypto.keys import DataKey
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import UnknownOrganizationError, fetch_organization, fetch_venues
from stream_app.observability import REPORT_GENERATIONS
from stream_app.reports import registry
from stream_app.reports.artifacts import ArtifactStore, artifact_path
from stream_app.reports.errors import (
    ReportCancelledError,
    ReportFailure,
    cause_text,
    is_retriable,
)
from stream_app.reports.model import ReportTable
from stream_app.reports.render import RENDERERS
from stream_app.reports.streaming import open_session
from stream_app.reports.timing import Run, TimedPool, flush_queries
from stream_app.reports.types.base import ReportContext, ReportInputError
from stream_app.reports.venue_rows import read_venue_rows
from stream_app.runtime import failpoints
from stream_app.schemas.reports import ReportRequest
from stream_app.schemas.updates import ArtifactLink

log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3
"""Generation attempts of a report whose failures are retriable (the first included)."""

store = ArtifactStore(
    settings.artifact_dir, settings.artifact_store_max_bytes, settings.artifact_org_max_bytes
)
"""The artifact store the reports are written to."""


def render_all(
    table: ReportTable, req: ReportRequest, stop: threading.Event, key: DataKey
) -> tuple[list[ArtifactLink], float]:
    """Render every requested format (worker thread); ``(links, CPU seconds of this thread)``.

    Each file is sealed with ``key``, the organisation's current data key.

    Stops before the next format once ``stop`` is set, deleting what it wrote.

    Raises:
        ReportCancelledError: ``stop`` was set.
    """
    cpu0 = time.thread_time()
    links: list[ArtifactLink] = []
    for fmt in req.output_formats:
        if stop.is_set():
            break
        ext, render = RENDERERS[fmt]
        name = f"{req.report_type}.{ext}"
        with store.write(req.organization_id, req.report_id, name, fmt, key=key) as (writer, out):
            render(table, writer)
        links.extend(out)
        failpoints.hit("report_rendered")  # the crash tests: a worker dying mid-report
    if stop.is_set():
        for link in links:
            artifact_path(
                settings.artifact_dir,
                req.organization_id,
                req.report_id,
                req.report_type,
                link.format,
            ).unlink(missing_ok=True)
        raise ReportCancelledError(req.report_id)
    return links, time.thread_time() - cpu0


async def generate(req: ReportRequest, run: Run | None = None) -> list[ArtifactLink]:
    """Build and render the report of ``req``; return the stored artifacts.

    Adds the query, processing, rendering and CPU time to ``run``.

    Raises:
        ReportFailure: the organisation is unknown, or the report type's builder refused the
            request (:class:`~stream_app.reports.types.base.ReportInputError`), both not
            retriable; or a table holder is unreachable (retriable).
        ReportCancelledError: the run's stop flag was set while rendering.
        OSError, asyncpg errors: see :func:`~stream_app.reports.errors.is_retriable`.
    """
    run = run or Run()
    pool = await get_pool(settings.postgres_dsn)
    async with TimedPool(pool, run).acquire() as conn:
        try:
            org = await run.timed(fetch_organization(cast(Any, conn), req.organization_id))
        except UnknownOrganizationError as exc:
            raise ReportFailure(str(exc)) from exc
        venues = await run.timed(fetch_venues(cast(Any, conn), req.organization_id))

    async def timed_rows(
        organization_id: str, venue_ids: list[str], date_from: date, date_to: date
    ) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = await run.timed(
            read_venue_rows(organization_id, venue_ids, date_from, date_to)
        )
        return result

    rtype = registry.get(req.report_type)
    run.organization_id, run.report_type = req.organization_id, req.report_type
    key = await (await get_keyring(settings.postgres_dsn)).current(req.organization_id)
    timed_pool = TimedPool(pool, run)
    try:
        async with AsyncExitStack() as stack:
            session = None
            if rtype.streams:  # one connection and snapshot from the build to the last format
                session = await stack.enter_async_context(
                    open_session(timed_pool, req.organization_id, req.report_type, run.stop)
                )
            ctx = ReportContext(
                request=req,
                organization=org,
                venues=venues,
                pool=cast(asyncpg.Pool, timed_pool),
                read_venue_rows=timed_rows,
                session=session,
            )
            t0, q0, cpu0 = time.perf_counter(), run.query_s, time.thread_time()
            try:
                table = await rtype.build(ctx)
            except ReportInputError as exc:
                raise ReportFailure(str(exc)) from exc
            finally:
                run.processing_s += (time.perf_counter() - t0) - (run.query_s - q0)
                run.cpu_s += time.thread_time() - cpu0
            t1 = time.perf_counter()
            rendering = asyncio.ensure_future(
                asyncio.to_thread(render_all, table, req, run.stop, key)
            )
            try:
                links, cpu = await asyncio.shield(rendering)
            except asyncio.CancelledError:
                run.stop.set()  # cancelled (or the worker stopping): the render stops too
                if session is not None:
                    # the render thread may be reading the session's cursors: wait for it
                    # before the session's transaction and connection go back
                    with contextlib.suppress(Exception):
                        await rendering
                else:  # its outcome taken when it ends (an attacker round saw "Task
                    # exception was never retrieved" for renders of cancelled reports)
                    rendering.add_done_callback(_outcome_of_abandoned_render)
                raise
            finally:
                run.rendering_s += time.perf_counter() - t1
                if session is not None:
                    run.queries.extend(session.queries)
    finally:
        await flush_queries(pool, run)
    run.cpu_s += cpu
    return links


def _outcome_of_abandoned_render(rendering: asyncio.Future[Any]) -> None:
    """Take the outcome of a render nobody awaits any more (its report was cancelled)."""
    if not rendering.cancelled() and (exc := rendering.exception()) is not None:
        log.debug("the render of a cancelled report ended with %s", cause_text(exc))


async def generate_with_retries(req: ReportRequest, run: Run) -> list[ArtifactLink]:
    """:func:`generate` with up to :data:`RETRY_ATTEMPTS` attempts for retriable causes.

    Each attempt is counted in PostgreSQL and each failure recorded with its cause.

    Raises:
        the last attempt's exception; ReportCancelledError when the report was cancelled.
    """
    base = settings.report_retry_base_s
    pool = await get_pool(settings.postgres_dsn)
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(RETRY_ATTEMPTS),
        wait=wait_exponential(multiplier=base, min=base, max=base * 4),
        retry=retry_if_exception(is_retriable),
        reraise=True,
    ):
        with attempt:
            async with pool.acquire() as conn:
                n = await report_db.start_attempt(conn, req.organization_id, req.report_id)
            if n == 0:
                raise ReportCancelledError(req.report_id)
            run.attempts = n
            try:
                links = await generate(req, run)
            except ReportCancelledError:
                raise
            except Exception as exc:
                REPORT_GENERATIONS.labels(req.report_type, "failed").inc()
                async with pool.acquire() as conn:
                    await report_db.record_attempt_error(
                        conn, req.organization_id, req.report_id, n, cause_text(exc)
                    )
                log.warning("report %s attempt %d failed: %s", req.report_id, n, cause_text(exc))
                raise
            REPORT_GENERATIONS.labels(req.report_type, "completed").inc()
            return links
    raise AssertionError("unreachable: tenacity re-raises the last error")


def report_metadata(req: ReportRequest, versions: dict[str, int]) -> dict[str, Any]:
    """The metadata a generated report of ``req`` carries (type, range, options, the data
    versions it read)."""
    rtype = registry.get(req.report_type)
    return {
        "title": rtype.title,
        "cache_class": rtype.cache_class,
        "reads": sorted(rtype.reads),
        "data_versions": versions,
        "date_from": req.date_from.isoformat(),
        "date_to": req.date_to.isoformat(),
        "data_filters": req.data_filters,
        "configuration": req.configuration,
        "output_formats": req.output_formats,
    }
