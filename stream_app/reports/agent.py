"""The report agent: ``report-requests`` in; priority lanes; artifacts and status changes out.

**Lanes.** A router agent (:func:`report_agent`) reads ``report-requests``, validates each
request (a malformed one is dead-lettered and, when its id and organisation can be read, ends
``failed``), records it in PostgreSQL as ``queued``, publishes ``queued`` and re-publishes the
request to the topic of its priority, ``report-requests-<priority>``. Each lane topic has its
own agent with its own concurrency (:attr:`Settings.report_lane_concurrency`), so a
``critical`` report never waits behind ``low`` ones: they are different partitions read by
different actors, and a backlog of one lane is invisible to the others. Why topics, not an
in-process priority queue: the lanes keep everything a Kafka topic gives (a request survives a
crash, lanes scale out with partitions and workers, a lane's lag is visible) and the router
keeps the one input contract (``report-requests``) every producer already uses. The lane key is
``organization_id/<cache key>``, so identical requests meet on one worker (single flight) and
land where their key's cache table partition lives (:mod:`stream_app.reports.cache`).

**Generation** (lane agent): claim the report (``queued → processing`` in PostgreSQL, so a
redelivered request is generated once), publish ``processing``, answer from the cache when the
strategy allows (hit levels in :mod:`stream_app.reports.cache`), else read the organisation
and venues from PostgreSQL and the figures from the tables, render each format in a worker
thread (live metrics keep flowing), store the files with SHA-256 and size, and end
``completed`` with the links, cache info and measured performance, or ``failed`` with the
cause. Every status change goes to ``realtime-metrics-updates`` and ``report-results``.

**Retries.** A retriable cause (:func:`is_retriable`: I/O errors of the artifact store, lost
PostgreSQL connections, an unreachable table holder) is retried with exponential backoff
(tenacity; waits ``base``, ``2 × base``; three attempts); each attempt and its error are
recorded (``attempts``, ``attempt_errors``). After the third, the report ends ``failed`` with
the cause and the request goes to ``dead-letter-events``. A non-retriable cause (unknown
organisation or venue, bad filter, a builder's :class:`ReportInputError`) fails at once.

**Cancellation** (:func:`cancel_report`, HTTP ``POST …/cancel``, ``wedding-engine cancel``):
PostgreSQL moves a ``queued`` or ``processing`` report to ``cancelled`` and the canceller
publishes ``cancelled``. A queued report is then never claimed. A running one is stopped: at
once when it runs on the worker that took the cancel (its task is cancelled), else within
:attr:`Settings.report_cancel_poll_s` by a watchdog reading its status; the render thread stops
before the next format, and the report's files are deleted. Completion is conditional on
``processing`` in PostgreSQL, so a cancel racing a completion has one winner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import threading
import time
import tracemalloc
from collections.abc import AsyncIterable, Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import aiohttp
import asyncpg
import msgspec
import orjson
from faust.types import EventT
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.app import app, settings
from stream_app.crypto.keyring import get_keyring
from stream_app.crypto.keys import DataKey
from stream_app.db import audit_events, monitoring
from stream_app.db import reports as report_db
from stream_app.db.pool import get_pool
from stream_app.db.tenancy import (
    UnknownOrganizationError,
    fetch_organization,
    fetch_venues,
    tenant_transaction,
)
from stream_app.errors import WeddingError
from stream_app.observability import (
    REPORT_CACHE,
    REPORT_GENERATIONS,
    REPORT_LANE_ORG_HELD,
    REPORT_LANE_ORGS,
    REPORT_SECONDS,
    REPORTS,
)
from stream_app.queries.errors import QueryUnavailableError
from stream_app.queries.routing import as_table_row, local_periods, owner_url, remote_periods
from stream_app.quotas import org_share
from stream_app.reports import booking_summary, cache, registry
from stream_app.reports.artifacts import (
    ArtifactPathError,
    ArtifactStore,
    ArtifactStoreFullError,
    artifact_path,
    remove_report_folder,
)
from stream_app.reports.audit_details import REPORT_AGENT_ACTOR, request_details, status_details
from stream_app.reports.cache import CacheEntry
from stream_app.reports.model import ReportTable
from stream_app.reports.registry import CACHE_TTL_S, ReportContext, ReportInputError
from stream_app.reports.render import RENDERERS
from stream_app.reports.streaming import open_session
from stream_app.runtime import failpoints
from stream_app.runtime.context import outside_any_event
from stream_app.schemas.base import EventValidationError, decode_event, encode_event
from stream_app.schemas.ids import is_valid_id
from stream_app.schemas.reports import PRIORITIES, ReportRequest
from stream_app.schemas.updates import (
    ArtifactLink,
    CacheInfo,
    CacheLevel,
    PerformanceMetrics,
    ReportStatus,
    ReportStatusName,
)
from stream_app.tables.bookings import table_key
from stream_app.topics import (
    REALTIME_METRICS_UPDATES,
    REPORT_LANES,
    REPORT_REQUESTS,
    REPORT_RESULTS,
)

log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3
"""Generation attempts of a report whose failures are retriable (the first included)."""

_raw: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
report_requests_topic = app.topic(REPORT_REQUESTS, partitions=settings.topic_partitions, **_raw)
report_results_topic = app.topic(REPORT_RESULTS, partitions=settings.topic_partitions, **_raw)
updates_topic = app.topic(REALTIME_METRICS_UPDATES, partitions=settings.topic_partitions, **_raw)
lane_topics = {
    p: app.topic(REPORT_LANES[p], partitions=settings.topic_partitions, **_raw) for p in PRIORITIES
}

store = ArtifactStore(settings.artifact_dir, settings.artifact_store_max_bytes)


class ReportFailure(WeddingError):
    """A report cannot be generated; the message is the cause shown to the user.

    Attributes:
        retriable: True when a later attempt may succeed (a holder of table rows could not be
            reached); False for causes in the request or the data.
    """

    def __init__(self, cause: str, *, retriable: bool = False) -> None:
        super().__init__(cause)
        self.retriable = retriable


class ReportCancelledError(WeddingError):
    """The report was cancelled (seen in PostgreSQL) before an attempt could start."""


def is_retriable(exc: BaseException) -> bool:
    """True when a failed generation may succeed if tried again.

    An exception's own ``retriable`` attribute decides when it has one (style: errors carry
    their retry class); otherwise I/O errors (``OSError``: the artifact store, sockets),
    timeouts, lost PostgreSQL connections and HTTP client errors are retriable, others not.
    """
    flag = getattr(exc, "retriable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | aiohttp.ClientError,
    )


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
        priority=req.priority,
        **extra,
    )


async def read_venue_rows(
    organization_id: str, venue_ids: list[str], date_from: date, date_to: date
) -> dict[str, dict[str, Any]]:
    """The table rows a booking summary of ``[date_from, date_to]`` needs, by table key.

    Rows of venues held by this worker come from its table; the others from the worker that
    holds them, over HTTP (:mod:`stream_app.queries.routing`).

    Raises:
        ReportFailure: a holder of some venue's rows cannot be reached (retriable).
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
        except QueryUnavailableError as exc:
            raise ReportFailure(f"venue {venue_id!r}: {exc.reason}", retriable=True) from exc
    return rows


# ---------------------------------------------------------------------------------------------
# measuring


@dataclass
class _Run:
    """What one report's generation measured (seconds, bytes) and its stop flag."""

    query_s: float = 0.0
    processing_s: float = 0.0
    rendering_s: float = 0.0
    cpu_s: float = 0.0
    attempts: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    organization_id: str = ""
    report_type: str = ""
    queries: list[monitoring.QueryRecord] = field(default_factory=list)
    """The report's queries timed since the last flush to the query log."""

    async def timed(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw``, adding its wall time to the query time."""
        t0 = time.perf_counter()
        try:
            return await aw
        finally:
            self.query_s += time.perf_counter() - t0


def _rss_bytes() -> int:
    """Resident set size of this process now (``/proc/self/statm``; else the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _MemoryTracer:
    """Peak memory of each running report, in one of two modes (``WEDDING_REPORT_MEMORY``).

    - ``rss`` (default): a sampler thread reads the process's resident set size every 5 ms
      while reports run; a report's figure is the peak RSS above the RSS at its start (what
      it made the worker grow by; memory reused from earlier reports does not count again).
    - ``tracemalloc``: peak of Python allocations above the level at the report's start
      (exact for one report at a time, an upper bound when reports overlap; it slows
      allocation-heavy rendering 2–5× here, hence not the default).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.active: dict[int, list[int]] = {}  # token -> [baseline, peak]
        self._lock = threading.Lock()
        self._next = 0
        self._sampler: threading.Thread | None = None

    def begin(self) -> int:
        """Start measuring one report; returns its token."""
        with self._lock:
            self._next += 1
            token = self._next
            if self.mode == "tracemalloc":
                if not self.active:
                    tracemalloc.start()
                    tracemalloc.reset_peak()
                now = tracemalloc.get_traced_memory()[0]
            else:
                now = _rss_bytes()
            self.active[token] = [now, now]
            if self.mode != "tracemalloc" and self._sampler is None:
                self._sampler = threading.Thread(target=self._sample, daemon=True)
                self._sampler.start()
        return token

    def _sample(self) -> None:
        while True:
            with self._lock:
                if not self.active:
                    self._sampler = None
                    return
                rss = _rss_bytes()
                for pair in self.active.values():
                    pair[1] = max(pair[1], rss)
            time.sleep(0.005)

    def end(self, token: int) -> int:
        """Stop measuring the report of ``token``; its peak bytes above its start."""
        with self._lock:
            baseline, peak = self.active.pop(token, [0, 0])
            if self.mode == "tracemalloc":
                if tracemalloc.is_tracing():
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
                if not self.active:
                    tracemalloc.stop()
            else:
                peak = max(peak, _rss_bytes())
        return max(0, peak - baseline)


_memory = _MemoryTracer(os.environ.get("WEDDING_REPORT_MEMORY", "rss"))

_TIMED_METHODS = frozenset(
    {"fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_from_query"}
)
_MONITORED_METHODS = frozenset({"fetch", "fetchrow", "fetchval"})
"""The report queries (``execute`` is the transaction's set-up, not a query of the report)."""


class _TimedConnection:
    """An asyncpg connection whose queries add their wall time to a run's query time; the
    report's queries (:data:`_MONITORED_METHODS`) also go through query monitoring
    (:mod:`stream_app.db.monitoring`: histogram, slow-query plan and counter, query log)."""

    def __init__(self, conn: asyncpg.Connection, run: _Run) -> None:
        self._conn = conn
        self._run = run

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name not in _TIMED_METHODS:
            return attr
        run = self._run
        conn = self._conn
        monitored = name in _MONITORED_METHODS and bool(run.report_type)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            result = await run.timed(attr(*args, **kwargs))
            if monitored and args and isinstance(args[0], str):
                rows = len(result) if name == "fetch" else int(result is not None)
                run.queries.append(
                    await monitoring.observe(
                        conn,
                        run.organization_id,
                        "report",
                        run.report_type,
                        args[0],
                        args[1:],
                        time.perf_counter() - t0,
                        rows,
                        started_at,
                    )
                )
            return result

        return timed


class _TimedAcquire:
    def __init__(self, ctx: Any, run: _Run) -> None:
        self._ctx = ctx
        self._run = run

    async def __aenter__(self) -> _TimedConnection:
        conn = await self._run.timed(self._ctx.__aenter__())
        return _TimedConnection(conn, self._run)

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._ctx.__aexit__(*exc)


class _TimedPool:
    """The pool a report's builder gets: ``async with pool.acquire()`` and the pool's own
    query methods are timed; everything else is the asyncpg pool's."""

    def __init__(self, pool: asyncpg.Pool, run: _Run) -> None:
        self._pool = pool
        self._run = run

    def acquire(self, *, timeout: float | None = None) -> _TimedAcquire:
        return _TimedAcquire(self._pool.acquire(timeout=timeout), self._run)

    def __getattr__(self, name: str) -> Any:
        return _TimedConnection.__getattr__(cast(Any, self), name)

    @property
    def _conn(self) -> asyncpg.Pool:  # what _TimedConnection.__getattr__ reads
        return self._pool


# ---------------------------------------------------------------------------------------------
# generating


def _render_all(
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


async def generate(req: ReportRequest, run: _Run | None = None) -> list[ArtifactLink]:
    """Build and render the report of ``req``; return the stored artifacts.

    Adds the query, processing, rendering and CPU time to ``run``.

    Raises:
        ReportFailure: the organisation is unknown, or the report type's builder refused the
            request (:class:`~stream_app.reports.registry.ReportInputError`), both not
            retriable; or a table holder is unreachable (retriable).
        ReportCancelledError: the run's stop flag was set while rendering.
        OSError, asyncpg errors: see :func:`is_retriable`.
    """
    run = run or _Run()
    pool = await get_pool(settings.postgres_dsn)
    async with _TimedPool(pool, run).acquire() as conn:
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
    timed_pool = _TimedPool(pool, run)
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
                asyncio.to_thread(_render_all, table, req, run.stop, key)
            )
            try:
                links, cpu = await asyncio.shield(rendering)
            except asyncio.CancelledError:
                if session is not None:
                    # the render thread may be reading the session's cursors: stop it and
                    # wait for it before the session's transaction and connection go back
                    run.stop.set()
                    with contextlib.suppress(Exception):
                        await rendering
                raise
            finally:
                run.rendering_s += time.perf_counter() - t1
                if session is not None:
                    run.queries.extend(session.queries)
    finally:
        await _flush_queries(pool, run)
    run.cpu_s += cpu
    return links


async def _flush_queries(pool: asyncpg.Pool, run: _Run) -> None:
    """Write the run's timed queries to the organisation's query log (best effort: a report
    never fails because its statistics could not be written)."""
    queries, run.queries = run.queries, []
    if not queries:
        return
    try:
        async with pool.acquire() as conn:
            await monitoring.record(conn, run.organization_id, queries)
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("report queries of %s not logged: %s", run.organization_id, exc)


async def _generate_with_retries(req: ReportRequest, run: _Run) -> list[ArtifactLink]:
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
                        conn, req.organization_id, req.report_id, n, _cause(exc)
                    )
                log.warning("report %s attempt %d failed: %s", req.report_id, n, _cause(exc))
                raise
            REPORT_GENERATIONS.labels(req.report_type, "completed").inc()
            return links
    raise AssertionError("unreachable: tenacity re-raises the last error")


def _cause(exc: BaseException) -> str:
    if isinstance(exc, ReportFailure | ArtifactStoreFullError):  # their message is the cause
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _metadata(req: ReportRequest, versions: dict[str, int]) -> dict[str, Any]:
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


async def _finished_elsewhere(req: ReportRequest) -> bool:
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


async def _discard_files(req: ReportRequest) -> None:
    """Delete the files of ``req``'s report: its own folder ``<store>/<org>/<report_id>`` only
    (:func:`~stream_app.reports.artifacts.remove_report_folder` refuses anything else)."""
    try:
        await asyncio.to_thread(
            remove_report_folder, settings.artifact_dir, req.organization_id, req.report_id
        )
    except (ArtifactPathError, OSError) as exc:
        log.error("report %s/%s: files not deleted: %s", req.organization_id, req.report_id, exc)


async def _produce(
    req: ReportRequest, event: EventT[bytes], started: float, run: _Run
) -> ReportStatusName:
    """Answer one claimed request: from the cache, from a running identical one, or generated."""
    rtype = registry.get(req.report_type)
    key = cache.cache_key(req)
    ttl = CACHE_TTL_S[rtype.cache_class]
    pool = await get_pool(settings.postgres_dsn)
    token = _memory.begin()
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
                links = await _generate_with_retries(req, run)
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
                    metadata=_metadata(req, versions),
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
        peak = _memory.end(token)
        token = -1
        if isinstance(exc, ReportCancelledError):
            raise
        return await _fail(req, event, started, exc, run, peak)
    finally:
        if token >= 0:
            peak = _memory.end(token)
    age = max(0.0, (datetime.now(UTC) - entry.generated_at).total_seconds()) if hit else 0.0
    info = CacheInfo(
        level=level,
        key=key,
        age_s=round(age, 3),
        source_report_id=None if entry.report_id == req.report_id else entry.report_id,
    )
    status = _status(
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
        performance=_performance(run, started, peak),
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
            await _audit_status(conn, req, "completed", formats=formats, attempts=run.attempts)
    if not moved:  # cancelled meanwhile (its canceller published 'cancelled'), or taken over
        if level == "miss":
            cache.forget(entry)
        if not await _finished_elsewhere(req):
            await _discard_files(req)
        raise ReportCancelledError(req.report_id)
    if level == "miss":
        await cache.store(entry)
    await publish_status(status)
    REPORTS.labels(req.report_type, "completed").inc()
    REPORT_SECONDS.labels(req.report_type).observe(time.perf_counter() - started)
    return "completed"


def _performance(run: _Run, started: float, peak: int) -> PerformanceMetrics:
    return PerformanceMetrics(
        query_ms=round(run.query_s * 1000, 3),
        processing_ms=round(max(0.0, run.processing_s) * 1000, 3),
        rendering_ms=round(run.rendering_s * 1000, 3),
        total_ms=round((time.perf_counter() - started) * 1000, 3),
        peak_memory_bytes=peak,
        cpu_ms=round(run.cpu_s * 1000, 3),
    )


async def _fail(
    req: ReportRequest,
    event: EventT[bytes],
    started: float,
    exc: BaseException,
    run: _Run,
    peak: int,
) -> ReportStatusName:
    """End a report ``failed`` with its cause; dead-letter it after exhausted retries."""
    cause = _cause(exc)
    exhausted = is_retriable(exc)
    if exhausted:
        cause = f"failed after {run.attempts} attempts: {cause}"
    status = _status(
        req,
        "failed",
        started,
        error=cause,
        attempts=run.attempts,
        performance=_performance(run, started, peak),
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
            await _audit_status(conn, req, "failed", attempts=run.attempts)
    if not moved:
        raise ReportCancelledError(req.report_id)
    await _discard_files(req)
    if exhausted:
        await send_to_dead_letter(event, field="$", reason=cause)
    await publish_status(status)
    REPORTS.labels(req.report_type, "failed").inc()
    return "failed"


async def _audit_status(
    conn: asyncpg.Connection,
    req: ReportRequest,
    status: str,
    *,
    formats: list[str] | None = None,
    attempts: int = 0,
) -> None:
    """Record a status change made by this agent (in the caller's transaction)."""
    await audit_events.record(
        conn,
        req.organization_id,
        REPORT_AGENT_ACTOR,
        "report.status",
        req.report_id,
        status_details(status, req.report_type, formats=formats, attempts=attempts),
        outcome="failed" if status == "failed" else "ok",
    )


# ---------------------------------------------------------------------------------------------
# cancelling

_running: dict[tuple[str, str], tuple[asyncio.Task[ReportStatusName], _Run]] = {}
"""Reports generating on this worker, by ``(organization_id, report_id)``."""


async def cancel_report(
    organization_id: str, report_id: str, *, actor: str = "system"
) -> str | None:
    """Cancel a queued or running report of ``organization_id`` (see the module docstring).

    ``actor`` (who asked) is recorded in the audit log with the cancellation (again for a
    repeated cancel: :func:`stream_app.db.reports.cancel` answers ``cancelled`` for both).

    Returns:
        ``"cancelled"`` when this call cancelled it (and published ``cancelled``), else the
        report's final status (``completed``, ``failed``, ``cancelled``), or None when the
        organisation has no such report.
    """
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        async with tenant_transaction(conn, organization_id):
            outcome = await report_db.cancel(conn, organization_id, report_id)
            if outcome == "cancelled":
                await audit_events.record(
                    conn,
                    organization_id,
                    actor,
                    "report.status",
                    report_id,
                    {"status": "cancelled"},
                )
        rec = await report_db.fetch_report(conn, organization_id, report_id)
    if outcome != "cancelled" or rec is None:
        return outcome
    running = _running.get((organization_id, report_id))
    if running is not None:
        running[1].stop.set()
        running[0].cancel()
    await publish_status(
        ReportStatus(
            kind="report_status",
            report_id=report_id,
            organization_id=organization_id,
            report_type=rec.report_type,
            status="cancelled",
            at=datetime.now(UTC),
            error="cancelled by request",
            priority=rec.priority,
            attempts=rec.attempts,
        )
    )
    REPORTS.labels(rec.report_type, "cancelled").inc()
    return "cancelled"


async def _watch_cancel(
    organization_id: str, report_id: str, task: asyncio.Task[Any], stop: threading.Event
) -> None:
    """Cancel ``task`` (and stop its render thread) once the report is ``cancelled``; keep
    the report's heartbeat (``updated_at``) fresh while it runs (:data:`REPORT_STALE_AFTER_S`)."""
    pool = await get_pool(settings.postgres_dsn)
    beat_at = time.monotonic()
    while not task.done():
        await asyncio.sleep(settings.report_cancel_poll_s)
        beat = time.monotonic() - beat_at >= HEARTBEAT_S
        try:
            async with pool.acquire() as conn:
                if beat:
                    status = await report_db.heartbeat(conn, organization_id, report_id)
                    beat_at = time.monotonic()
                else:
                    status = await report_db.current_status(conn, organization_id, report_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            continue
        if status == "cancelled":
            stop.set()
            task.cancel()
            return


# ---------------------------------------------------------------------------------------------
# agents


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
    """Router: validate, record ``queued``, publish it, forward to the request's lane.

    Returns ``queued`` when forwarded, ``failed`` when refused, None when dropped (a key that
    does not match, a redelivered request whose report is already final, or a request whose
    ``(organization_id, report_id)`` already names a different request: that one is
    dead-lettered naming ``$.report_id`` and the stored report is left as it is).
    """
    started = time.perf_counter()
    raw = event.message.value or b""
    try:
        req = decode_event(raw, ReportRequest)
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
    key = cache.cache_key(req)
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        try:
            async with tenant_transaction(conn, req.organization_id):  # with the queued row
                is_new = await report_db.insert_queued(
                    conn,
                    report_id=req.report_id,
                    organization_id=req.organization_id,
                    user_id=req.user_id,
                    report_type=req.report_type,
                    request=orjson.loads(raw),
                    priority=req.priority,
                    cache_strategy=req.cache_strategy,
                    cache_key=key,
                )
                if is_new:  # not through the HTTP API, which records its own requests
                    await audit_events.record(
                        conn,
                        req.organization_id,
                        req.user_id,
                        "report.requested",
                        req.report_id,
                        request_details(req, "kafka"),
                    )
        except asyncpg.ForeignKeyViolationError:
            cause = f"organization_id: {req.organization_id!r} does not exist"
            await publish_status(_status(req, "failed", started, error=cause))
            REPORTS.labels(req.report_type, "failed").inc()
            return "failed"
        except Exception as exc:  # noqa: BLE001 - recorded as the report's cause
            cause = f"cannot record request: {exc}"
            await publish_status(_status(req, "failed", started, error=cause))
            REPORTS.labels(req.report_type, "failed").inc()
            return "failed"
        current: str | None = "queued"
        if not is_new:
            same = await report_db.same_request(
                conn, req.organization_id, req.report_id, orjson.loads(raw)
            )
            if same is False:  # an id of this organisation re-used for another request
                await send_to_dead_letter(
                    event,
                    field="$.report_id",
                    reason=f"report_id {req.report_id!r} already names another request of"
                    f" organization {req.organization_id!r}; the stored report is kept",
                )
                return None
            current = await report_db.current_status(conn, req.organization_id, req.report_id)
    if current not in ("queued", "processing"):
        return None  # cancelled before it was routed, or a redelivered final report
    if current == "queued":  # new here, or recorded by the HTTP view that accepted it
        await publish_status(_status(req, "queued", started))
    fut = await lane_topics[req.priority].send(
        key=cache.message_key(req.organization_id, key), value=raw
    )
    await fut
    return "queued"


async def handle_lane_request(event: EventT[bytes]) -> ReportStatusName | None:
    """Lane: claim one request and answer it; the final status, None when not claimed.

    An organisation holds at most its share (``WEDDING_ORG_SLOT_SHARE``) of the lane's
    concurrency on this worker; a request over it goes back to the end of its lane.
    """
    started = time.perf_counter()
    try:
        req = decode_event(event.message.value or b"", ReportRequest)
    except EventValidationError as exc:  # the router validated it: only a foreign producer
        await send_to_dead_letter(event, field=exc.field, reason=exc.reason)
        return None
    share = (req.priority, req.organization_id)
    if _lane_held.get(share, 0) >= org_share(
        settings.report_lane_concurrency[req.priority], settings.org_slot_share
    ):
        # the organisation holds its share of this lane here: back to the end of the lane,
        # so this slot takes the next request (maybe another tenant's) instead of waiting
        await asyncio.sleep(QUOTA_REQUEUE_DELAY_S)
        fut = await lane_topics[req.priority].send(key=event.message.key, value=event.message.value)
        await fut
        return None
    _lane_held[share] = _lane_held.get(share, 0) + 1
    _publish_lane_shares(req.priority)
    try:
        return await _claim_and_generate(req, event, started)
    finally:
        _lane_held[share] -= 1
        if _lane_held[share] == 0:
            del _lane_held[share]
        _publish_lane_shares(req.priority)


def _publish_lane_shares(lane: str) -> None:
    held = [n for (p, _), n in _lane_held.items() if p == lane]
    REPORT_LANE_ORG_HELD.labels(lane).set(max(held, default=0))
    REPORT_LANE_ORGS.labels(lane).set(len(held))


HEARTBEAT_S = 2.0
"""How often a running report refreshes its ``updated_at`` in PostgreSQL (its heartbeat)."""
REPORT_STALE_AFTER_S = 15.0
"""A ``processing`` report whose heartbeat is older than this is taken over by the worker
that holds its request (its own worker died or was paused)."""
TAKEOVER_RECHECK_S = 2.0
"""Pause before a request whose report is ``processing`` elsewhere goes back to its lane to
be looked at again (until it is final, or stale and taken over)."""
QUOTA_REQUEUE_DELAY_S = 0.5
"""Pause before a request over its organisation's share goes back to its lane (so a lane
holding only one tenant's backlog does not spin)."""
_lane_held: dict[tuple[str, str], int] = {}
"""(priority, organization_id) → lane slots of this worker it holds now."""


async def _claim_and_generate(
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
    async with pool.acquire() as conn, tenant_transaction(conn, req.organization_id):
        claimed = await report_db.claim_processing(
            conn, req.organization_id, req.report_id, stale_after_s=REPORT_STALE_AFTER_S
        )
        if claimed:
            await _audit_status(conn, req, "processing")
        else:
            current = await report_db.current_status(conn, req.organization_id, req.report_id)
    if not claimed:
        if current == "processing":
            # generating elsewhere, or its worker died (its offset was never committed, so
            # the request came back here): look again later; once the other worker's
            # heartbeat is older than REPORT_STALE_AFTER_S this worker takes the report over
            await asyncio.sleep(TAKEOVER_RECHECK_S)
            fut = await lane_topics[req.priority].send(
                key=event.message.key, value=event.message.value
            )
            await fut
        return None  # cancelled or final: nothing to do
    await publish_status(_status(req, "processing", started))
    run = _Run()
    task = asyncio.create_task(_produce(req, event, started, run))
    _running[(req.organization_id, req.report_id)] = (task, run)
    watchdog = asyncio.create_task(
        _watch_cancel(req.organization_id, req.report_id, task, run.stop)
    )
    try:
        return await task
    except (asyncio.CancelledError, ReportCancelledError):
        me = asyncio.current_task()
        if me is not None and me.cancelling():  # the worker is stopping, not the report
            task.cancel()
            raise
        if not await _finished_elsewhere(req):
            await _discard_files(req)
        log.info("report %s cancelled while %s", req.report_id, "running")
        return "cancelled"
    finally:
        watchdog.cancel()
        _running.pop((req.organization_id, req.report_id), None)


@app.agent(report_requests_topic, concurrency=2)
async def report_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``report-requests`` for ever and route each request to its lane."""
    async for event in stream.events():  # type: ignore[attr-defined]
        try:
            await route_request(event)
        except Exception:  # an agent that dies stops every request after it
            log.exception("report router: request at offset %s", event.message.offset)


def _lane_agent(priority: str) -> Any:
    async def lane(stream: AsyncIterable[Any]) -> None:
        async for event in stream.events():  # type: ignore[attr-defined]
            try:
                await handle_lane_request(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "report lane %s: request at offset %s", priority, event.message.offset
                )

    lane.__name__ = lane.__qualname__ = f"report_lane_{priority}"
    lane.__doc__ = f"Generate the ``{priority}`` reports (concurrency from the settings)."
    return app.agent(
        lane_topics[priority],
        name=f"stream_app.reports.agent.report_lane_{priority}",
        concurrency=settings.report_lane_concurrency[priority],
    )(lane)


lane_agents = {p: _lane_agent(p) for p in PRIORITIES}
