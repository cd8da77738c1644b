"""Query monitoring: every tenant query timed, slow ones explained, logged and counted.

Part of the database layer; wraps the query execution points of the aggregation engine
(:func:`fetch`) and of the report builders (the report agent's timed connection and the
streamed report rows call :func:`observe`, then :func:`record`). For each query:

- **Prometheus**: ``wedding_query_seconds{kind, dataset}`` (a histogram of the query's
  database time) and ``wedding_slow_queries_total{kind, dataset}`` (the alerting counter).
  Labels are bounded: ``kind`` is one of :data:`QUERY_KINDS`, ``dataset`` an aggregation
  dataset or a registered report type (``[a-z_]+``); never a tenant id, never SQL text.
- **Slow queries** (database time at or above ``WEDDING_SLOW_QUERY_S``, 5 s by default):
  the statement's generic plan is read with ``EXPLAIN (FORMAT JSON)`` (no ``ANALYZE``: the
  statement is not run a second time; generic: parameters stay ``$n``, see :func:`explain`)
  on the same connection, inside the same transaction (so the same tenant, role and
  snapshot), and logged at WARNING on logger ``stream_app.db.monitoring`` as one JSON object
  ``{"event": "slow_query", "organization_id", "kind", "dataset", "query_id", "duration_ms",
  "rows", "threshold_s", "sql", "plan"}``. The SQL text is the parameterised statement:
  no parameter value is logged.
- **Query log** (``query_log``, migration 021): one row per query in the organisation's tenant
  transaction (row-level security applies), kept :data:`RETENTION_DAYS` days; the organisation's
  slowest recent queries are read back by :func:`slowest` (``GET /orgs/{org}/query-stats``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import asyncpg
import orjson
from prometheus_client import Counter, Histogram

from stream_app.db.tenancy import tenant_transaction
from stream_app.errors import WeddingError
from stream_app.observability import REGISTRY
from stream_app.settings import slow_query_s_from_env

log = logging.getLogger(__name__)

QueryKind = Literal["aggregation", "report"]
QUERY_KINDS: frozenset[str] = frozenset(get_args(QueryKind))
"""The query kinds (a label value each)."""

RETENTION_DAYS = 7
"""Days a row of ``query_log`` is kept (older rows of an organisation are deleted when it
records new ones)."""

MAX_LOGGED_SQL_CHARS = 4000
"""Characters of a slow statement's text written to the log (the plan is logged whole)."""

QUERY_SECONDS = Histogram(
    "wedding_query_seconds",
    "Database time of a tenant query (aggregation or report query; a streamed report query:"
    " the time spent waiting for its cursor's batches), by kind and dataset (aggregation"
    " dataset or report type).",
    ["kind", "dataset"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SLOW_QUERIES = Counter(
    "wedding_slow_queries_total",
    "Tenant queries whose database time reached WEDDING_SLOW_QUERY_S (logged with their"
    " plan); alert on its rate.",
    ["kind", "dataset"],
    registry=REGISTRY,
)

_DATASET = re.compile(r"[a-z_]{1,64}")


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One timed query.

    Attributes:
        kind: ``aggregation`` or ``report``.
        dataset: the aggregation dataset or the report type.
        query_id: first 12 hex digits of the SHA-256 of the statement text (tells a report's
            queries apart without their text).
        duration_ms: database time, milliseconds.
        rows: rows the query returned.
        slow: ``duration_ms`` reached the slow-query threshold.
        started_at: when the query started (UTC).
    """

    kind: str
    dataset: str
    query_id: str
    duration_ms: float
    rows: int
    slow: bool
    started_at: datetime


def slow_query_s() -> float:
    """The slow-query threshold in seconds (``WEDDING_SLOW_QUERY_S``, read at each call so a
    test or an operator's restart-free change of the environment applies)."""
    return slow_query_s_from_env()


def fingerprint(sql: str) -> str:
    """First 12 hex digits of ``sha256(sql)``: a statement's name in the query log."""
    return hashlib.sha256(sql.encode()).hexdigest()[:12]


def _check_labels(kind: str, dataset: str) -> None:
    if kind not in QUERY_KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {sorted(QUERY_KINDS)}")
    if not _DATASET.fullmatch(dataset):
        raise ValueError(f"dataset: {dataset!r} must match [a-z_]{{1,64}}")


class _Undo(WeddingError):
    """Rolls the EXPLAIN's savepoint back (and its ``SET LOCAL`` with it)."""


async def explain(conn: asyncpg.Connection, sql: str, params: Sequence[Any]) -> Any:
    """The generic plan of ``sql`` (``EXPLAIN (FORMAT JSON)``, not run), as parsed JSON.

    Generic: the statement is prepared (``PREPARE``) and explained as ``EXECUTE`` with NULL
    arguments under ``plan_cache_mode = force_generic_plan``, so parameters appear as ``$1``,
    ``$2``, never as their values: a plan in the log carries no tenant data (a client id in
    a filter, for instance). It is the plan PostgreSQL chooses without knowing the values,
    which can differ from the one that ran. Runs in a savepoint (or a transaction) that is
    rolled back, and the prepared statement is deallocated, so the caller's transaction and
    session are left as they were. Returns ``{"error": reason}`` when PostgreSQL refuses.
    """
    name = f"wedding_explain_{fingerprint(sql)}"
    arguments = f"({', '.join(['NULL'] * len(params))})" if params else ""
    raw: Any = None
    prepared = False
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE {name} AS {sql}")
            prepared = True
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}{arguments}")
            raise _Undo
    except _Undo:
        pass
    except asyncpg.PostgresError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if prepared:  # PREPARE is not undone by a rollback
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute(f"DEALLOCATE {name}")
    return orjson.loads(raw) if isinstance(raw, str | bytes) else raw


async def observe(
    conn: asyncpg.Connection,
    organization_id: str,
    kind: str,
    dataset: str,
    sql: str,
    params: Sequence[Any],
    seconds: float,
    rows: int,
    started_at: datetime,
) -> QueryRecord:
    """Count one finished query in the histogram; explain, log and count it when slow.

    Call it on the connection that ran the query, inside the same transaction (the plan is
    read there). ``seconds`` is the query's database time.

    Raises:
        ValueError: ``kind`` or ``dataset`` is not a bounded label value.
    """
    _check_labels(kind, dataset)
    QUERY_SECONDS.labels(kind, dataset).observe(seconds)
    threshold = slow_query_s()
    slow = seconds >= threshold
    query_id = fingerprint(sql)
    if slow:
        SLOW_QUERIES.labels(kind, dataset).inc()
        plan = await explain(conn, sql, params)
        log.warning(
            "%s",
            orjson.dumps(
                {
                    "event": "slow_query",
                    "organization_id": organization_id,
                    "kind": kind,
                    "dataset": dataset,
                    "query_id": query_id,
                    "duration_ms": round(seconds * 1000, 3),
                    "rows": rows,
                    "threshold_s": threshold,
                    "sql": sql[:MAX_LOGGED_SQL_CHARS],
                    "plan": plan,
                },
                default=str,
            ).decode(),
        )
    return QueryRecord(kind, dataset, query_id, seconds * 1000, rows, slow, started_at)


_INSERT = (
    "WITH expired AS (DELETE FROM query_log WHERE organization_id = $1"
    f" AND started_at < now() - interval '{RETENTION_DAYS} days')"
    " INSERT INTO query_log"
    " (organization_id, kind, dataset, query_id, duration_ms, rows, slow, started_at)"
    " SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[],"
    " $6::bigint[], $7::bool[], $8::timestamptz[])"
)


async def record(
    conn: asyncpg.Connection,
    organization_id: str,
    records: Sequence[QueryRecord],
    *,
    in_scope: bool = False,
) -> None:
    """Write ``records`` to the query log of ``organization_id`` in one statement (and delete
    its rows older than :data:`RETENTION_DAYS`), inside the organisation's tenant transaction:
    entered here (a savepoint of the one ``conn`` is in), or, with ``in_scope``, the one the
    caller holds (one round trip; row-level security still checks the organisation)."""
    if not records:
        return
    async with AsyncExitStack() as stack:
        if not in_scope:
            await stack.enter_async_context(tenant_transaction(conn, organization_id))
        await conn.execute(
            _INSERT,
            organization_id,
            [r.kind for r in records],
            [r.dataset for r in records],
            [r.query_id for r in records],
            [r.duration_ms for r in records],
            [r.rows for r in records],
            [r.slow for r in records],
            [r.started_at for r in records],
        )


async def fetch(
    conn: asyncpg.Connection,
    organization_id: str,
    kind: QueryKind,
    dataset: str,
    sql: str,
    *params: Any,
) -> list[asyncpg.Record]:
    """``conn.fetch(sql, *params)``, timed, explained when slow and written to the query log.

    Call it inside ``tenant_transaction(conn, organization_id)``: the plan and the log row
    are read and written there.

    Raises:
        whatever ``conn.fetch`` raises (the failed query is neither timed nor logged);
        ValueError: a label value out of bounds (before the query runs).
    """
    _check_labels(kind, dataset)
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    rows: list[asyncpg.Record] = await conn.fetch(sql, *params)
    seconds = time.perf_counter() - t0
    rec = await observe(
        conn, organization_id, kind, dataset, sql, params, seconds, len(rows), started_at
    )
    await record(conn, organization_id, [rec], in_scope=True)
    return rows


async def slowest(conn: asyncpg.Connection, organization_id: str, limit: int) -> list[QueryRecord]:
    """The ``limit`` slowest queries of ``organization_id`` of the last :data:`RETENTION_DAYS`
    days, slowest first (ties: most recent first), read in its tenant transaction."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT kind, dataset, query_id, duration_ms, rows, slow, started_at"
            " FROM query_log WHERE organization_id = $1"
            f" AND started_at >= now() - interval '{RETENTION_DAYS} days'"
            " ORDER BY duration_ms DESC, started_at DESC LIMIT $2",
            organization_id,
            limit,
        )
    return [
        QueryRecord(
            r["kind"],
            r["dataset"],
            r["query_id"],
            float(r["duration_ms"]),
            int(r["rows"]),
            bool(r["slow"]),
            r["started_at"],
        )
        for r in rows
    ]
