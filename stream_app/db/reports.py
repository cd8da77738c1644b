"""The ``reports`` table: each report request, its status, artifacts, error, cache and cost.

Also the data versions of the report cache (``report_data_versions``): one counter per
(organisation, stream) that moves whenever events change that stream's tables, and the
counter :data:`HISTORY_STREAM` that PostgreSQL itself moves on every change to the
organisation's history (migration 016's triggers).

Status changes that end or stop a report are conditional (``WHERE status = …``), so a
cancellation racing a completion is decided by PostgreSQL: exactly one of them wins.

A report is identified by ``(organization_id, id)`` (migration 008): every statement names
both and runs in :func:`~stream_app.db.tenancy.tenant_transaction`, so another tenant's report
with the same id is neither read nor written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from stream_app.db.rows import column_list, from_row
from stream_app.db.tenancy import tenant_read, tenant_transaction

HISTORY_STREAM = "history"
"""The data version that any change to an organisation's PostgreSQL history moves (insert,
update or delete in a history table, its own row, a venue's row; migration 016). Every cached
report depends on it (:func:`stream_app.reports.cache.current_versions`)."""


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A stored report status (see :class:`stream_app.schemas.updates.ReportStatus`).

    ``cache``, ``performance`` and ``data_versions`` are the JSON objects stored with it
    (``None`` until set); ``attempt_errors`` lists ``{"attempt", "error", "at"}``.
    """

    id: str
    organization_id: str
    report_type: str
    status: str
    artifacts: list[dict[str, Any]]
    error: str | None
    processing_ms: float | None
    created_at: datetime
    updated_at: datetime
    priority: str = "normal"
    cache_strategy: str = "use_cache"
    cache_key: str | None = None
    cache: dict[str, Any] | None = None
    data_versions: dict[str, int] | None = None
    performance: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    attempts: int = 0
    attempt_errors: list[dict[str, Any]] | None = None
    generated_at: datetime | None = None
    data_size_bytes: int | None = None
    data_rows: int | None = None


_COLUMNS = column_list(ReportRecord)
_JSON_COLUMNS = frozenset(
    {"artifacts", "cache", "data_versions", "performance", "metadata", "attempt_errors"}
)


def _record(row: asyncpg.Record) -> ReportRecord:
    return from_row(ReportRecord, row, json=_JSON_COLUMNS)


async def insert_queued(
    conn: asyncpg.Connection,
    *,
    report_id: str,
    organization_id: str,
    user_id: str,
    report_type: str,
    request: dict[str, Any],
    priority: str = "normal",
    cache_strategy: str = "use_cache",
    cache_key: str | None = None,
) -> bool:
    """Record a new request as ``queued``; False if the organisation already has this id.

    Raises:
        asyncpg.ForeignKeyViolationError: the organisation does not exist.
    """
    async with tenant_transaction(conn, organization_id):
        status = await conn.execute(
            "INSERT INTO reports (id, organization_id, user_id, report_type, status, request,"
            " priority, cache_strategy, cache_key)"
            " VALUES ($1, $2, $3, $4, 'queued', $5::jsonb, $6, $7, $8)"
            " ON CONFLICT (organization_id, id) DO NOTHING",
            report_id,
            organization_id,
            user_id,
            report_type,
            orjson.dumps(request).decode(),
            priority,
            cache_strategy,
            cache_key,
        )
    return bool(status.endswith(" 1"))


async def same_request(
    conn: asyncpg.Connection, organization_id: str, report_id: str, request: dict[str, Any]
) -> bool | None:
    """Whether the stored request of ``(organization_id, report_id)`` equals ``request``.

    ``requested_at`` is left out of the comparison (a re-submitted scheduled request carries
    a new one). Returns None when the organisation has no such report.
    """
    async with tenant_transaction(conn, organization_id):
        same = await conn.fetchval(
            "SELECT (request - 'requested_at') = ($3::jsonb - 'requested_at') FROM reports"
            " WHERE organization_id = $1 AND id = $2",
            organization_id,
            report_id,
            orjson.dumps(request).decode(),
        )
    return None if same is None else bool(same)


async def claim_processing(
    conn: asyncpg.Connection,
    organization_id: str,
    report_id: str,
    *,
    stale_after_s: float = 300.0,
    claimer: str | None = None,
) -> bool:
    """Move a report from ``queued`` to ``processing`` for this caller; True if it got it.

    One generation at a time: a report already ``processing`` is taken over only when its
    last change is older than ``stale_after_s`` seconds (its worker died). A redelivered or
    doubly consumed request therefore does not generate the report twice at once; a
    cancelled, completed or failed report is never claimed. ``claimer`` (the worker process)
    is recorded as ``claimed_by`` (see :func:`reclaim_own`).
    """
    async with tenant_transaction(conn, organization_id):
        status = await conn.execute(
            "UPDATE reports SET status = 'processing', updated_at = now(), claimed_by = $4"
            " WHERE organization_id = $1 AND id = $2 AND"
            " (status = 'queued' OR (status = 'processing'"
            "  AND updated_at < now() - make_interval(secs => $3)))",
            organization_id,
            report_id,
            stale_after_s,
            claimer,
        )
    return bool(status.endswith(" 1"))


async def reclaim_own(
    conn: asyncpg.Connection, organization_id: str, report_id: str, claimer: str
) -> bool:
    """Take back a ``processing`` report that ``claimer`` claimed (``updated_at = now()``);
    False when it is no longer ``processing`` or another worker holds it (it took the report
    over while ``claimer``'s heartbeat was stale)."""
    async with tenant_transaction(conn, organization_id):
        status = await conn.execute(
            "UPDATE reports SET updated_at = now() WHERE organization_id = $1 AND id = $2"
            " AND status = 'processing' AND claimed_by = $3",
            organization_id,
            report_id,
            claimer,
        )
    return bool(status.endswith(" 1"))


async def mark_routed(conn: asyncpg.Connection, organization_id: str, report_id: str) -> None:
    """Record that the report's request reached its lane (``routed_at = now()``, UTC): the
    recovery sweep (:mod:`stream_app.reports.recovery`) leaves a routed ``queued`` report
    waiting its turn instead of sending it again."""
    async with tenant_transaction(conn, organization_id):
        await conn.execute(
            "UPDATE reports SET routed_at = now() WHERE organization_id = $1 AND id = $2",
            organization_id,
            report_id,
        )


async def heartbeat(conn: asyncpg.Connection, organization_id: str, report_id: str) -> str | None:
    """Mark a ``processing`` report as still being generated (``updated_at = now()``), so
    :func:`claim_processing` does not take it over; return the report's status (None when
    unknown). A report no longer ``processing`` is left as it is."""
    async with tenant_transaction(conn, organization_id):
        value = await conn.fetchval(
            "WITH touched AS (UPDATE reports SET updated_at = now()"
            " WHERE organization_id = $1 AND id = $2 AND status = 'processing'"
            " RETURNING status)"
            " SELECT coalesce((SELECT status FROM touched),"
            " (SELECT status FROM reports WHERE organization_id = $1 AND id = $2))",
            organization_id,
            report_id,
        )
    return None if value is None else str(value)


async def start_attempt(conn: asyncpg.Connection, organization_id: str, report_id: str) -> int:
    """Count one more generation attempt of a ``processing`` report; return its number.

    Returns 0 when the report is no longer ``processing`` (it was cancelled).
    """
    async with tenant_transaction(conn, organization_id):
        n = await conn.fetchval(
            "UPDATE reports SET attempts = attempts + 1, updated_at = now()"
            " WHERE organization_id = $1 AND id = $2 AND status = 'processing'"
            " RETURNING attempts",
            organization_id,
            report_id,
        )
    return int(n or 0)


async def record_attempt_error(
    conn: asyncpg.Connection, organization_id: str, report_id: str, attempt: int, error: str
) -> None:
    """Append ``{"attempt", "error", "at"}`` to the report's attempt errors."""
    async with tenant_transaction(conn, organization_id):
        await conn.execute(
            "UPDATE reports SET attempt_errors = attempt_errors || jsonb_build_array("
            " jsonb_build_object('attempt', $3::int, 'error', $4::text, 'at', now())),"
            " updated_at = now() WHERE organization_id = $1 AND id = $2",
            organization_id,
            report_id,
            attempt,
            error,
        )


async def current_status(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> str | None:
    """The stored status of a report of ``organization_id``, None when unknown."""
    async with tenant_transaction(conn, organization_id):
        value = await conn.fetchval(
            "SELECT status FROM reports WHERE organization_id = $1 AND id = $2",
            organization_id,
            report_id,
        )
    return None if value is None else str(value)


async def set_status(
    conn: asyncpg.Connection,
    organization_id: str,
    report_id: str,
    status: str,
    *,
    artifacts: list[dict[str, Any]] | None = None,
    error: str | None = None,
    processing_ms: float | None = None,
    only_from: Iterable[str] | None = None,
    cache: dict[str, Any] | None = None,
    data_versions: dict[str, int] | None = None,
    performance: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    generated_at: datetime | None = None,
    data_size_bytes: int | None = None,
    data_rows: int | None = None,
) -> bool:
    """Move a report to ``status`` with whatever details are given; True if it moved.

    ``only_from``: move only from one of these statuses (e.g. ``["processing"]`` so that a
    report cancelled meanwhile stays cancelled); None moves from any status.
    """
    allowed = list(only_from) if only_from is not None else None
    async with tenant_transaction(conn, organization_id):
        result = await conn.execute(
            "UPDATE reports SET status = $2, artifacts = COALESCE($3::jsonb, artifacts),"
            " error = $4, processing_ms = COALESCE($5, processing_ms),"
            " cache = COALESCE($7::jsonb, cache),"
            " data_versions = COALESCE($8::jsonb, data_versions),"
            " performance = COALESCE($9::jsonb, performance),"
            " metadata = COALESCE($10::jsonb, metadata),"
            " generated_at = COALESCE($11, generated_at),"
            " data_size_bytes = COALESCE($12, data_size_bytes),"
            " data_rows = COALESCE($13, data_rows), updated_at = now()"
            " WHERE organization_id = $14 AND id = $1"
            " AND ($6::text[] IS NULL OR status = ANY($6::text[]))",
            report_id,
            status,
            _json(artifacts),
            error,
            processing_ms,
            allowed,
            _json(cache),
            _json(data_versions),
            _json(performance),
            _json(metadata),
            generated_at,
            data_size_bytes,
            data_rows,
            organization_id,
        )
    return bool(result.endswith(" 1"))


NOT_THE_OWNERS = "not_the_owners"
"""What :func:`cancel` answers for a report of another user than ``owner``."""


_SCHEDULED = (
    "EXISTS (SELECT 1 FROM schedule_runs r"
    " WHERE r.organization_id = $1 AND r.report_ids @> ARRAY[$2::text])"
)
"""SQL: the report ``$2`` of organisation ``$1`` is one of a scheduled run's."""


async def cancel(
    conn: asyncpg.Connection, organization_id: str, report_id: str, owner: str | None = None
) -> str | None:
    """Cancel a ``queued`` or ``processing`` report of ``organization_id`` (only one that
    ``owner`` requested itself, when given: checked in the same statement, so no report of
    another user is cancelled in the moment between a check and the change). A scheduled
    run's report is nobody's own: it is recorded under its schedule's creator, and an
    analyst token with the creator's subject cancelled every run of an admin's schedules (an
    attacker round's finding); with ``owner`` given it is :data:`NOT_THE_OWNERS`.

    Returns:
        ``"cancelled"`` when this call cancelled it, :data:`NOT_THE_OWNERS` when it is another
        user's, else the report's current status (``completed``, ``failed`` or already
        ``cancelled``), or None when there is no such report in the organisation.
    """
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            "UPDATE reports SET status = 'cancelled', error = 'cancelled by request',"
            " updated_at = now() WHERE organization_id = $1 AND id = $2"
            " AND status IN ('queued', 'processing') AND ($3::text IS NULL OR (user_id = $3"
            f" AND NOT {_SCHEDULED}))"
            " RETURNING status",
            organization_id,
            report_id,
            owner,
        )
        if row is not None:
            return "cancelled"
        if owner is not None:
            found = await conn.fetchrow(
                f"SELECT user_id, {_SCHEDULED} AS scheduled FROM reports"
                " WHERE organization_id = $1 AND id = $2",
                organization_id,
                report_id,
            )
            if found is not None and (found["user_id"] != owner or found["scheduled"]):
                return NOT_THE_OWNERS
        return await current_status(conn, organization_id, report_id)


async def fetch_report(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> ReportRecord | None:
    """A report of ``organization_id`` by id (tenant transaction); None when not found."""
    return await _first_report(conn, organization_id, "id = $2", report_id)


async def latest_completed_for_key(
    conn: asyncpg.Connection, organization_id: str, cache_key: str, max_age_s: float
) -> ReportRecord | None:
    """The newest ``completed`` generation (not itself a cache hit) of ``cache_key``.

    Only generations younger than ``max_age_s`` seconds count (level 3 of the report cache).
    """
    return await _first_report(
        conn,
        organization_id,
        "cache_key = $2 AND status = 'completed'"
        " AND generated_at > now() - make_interval(secs => $3) AND cache->>'level' IN ('miss')"
        " ORDER BY generated_at DESC LIMIT 1",
        cache_key,
        max_age_s,
    )


async def _first_report(
    conn: asyncpg.Connection, organization_id: str, condition: str, *args: Any
) -> ReportRecord | None:
    """The first report of ``organization_id`` that meets ``condition`` (SQL after ``WHERE
    organization_id = $1 AND``, its parameters ``args`` from ``$2``), a tenant read
    (:func:`~stream_app.db.tenancy.tenant_read`); None when none does."""
    async with tenant_read(conn, organization_id):
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM reports WHERE organization_id = $1 AND {condition}",
            organization_id,
            *args,
        )
    return None if row is None else _record(row)


async def bump_data_versions(conn: asyncpg.Connection, counts: dict[tuple[str, str], int]) -> None:
    """Add ``n`` to the data version of each ``(organization_id, stream) -> n``."""
    if not counts:
        return
    await conn.executemany(
        "INSERT INTO report_data_versions (organization_id, stream, version) VALUES ($1, $2, $3)"
        " ON CONFLICT (organization_id, stream) DO UPDATE"
        " SET version = report_data_versions.version + EXCLUDED.version, updated_at = now()",
        [(org, stream, n) for (org, stream), n in sorted(counts.items())],
    )


async def data_versions(
    conn: asyncpg.Connection, organization_id: str, streams: Iterable[str]
) -> dict[str, int]:
    """The current data version of each of ``streams`` of ``organization_id`` (0 if none;
    tenant-scoped: outside it row-level security would read every version as 0)."""
    wanted = sorted(set(streams))
    if not wanted:
        return {}
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT stream, version FROM report_data_versions"
            " WHERE organization_id = $1 AND stream = ANY($2::text[])",
            organization_id,
            wanted,
        )
    found = {r["stream"]: int(r["version"]) for r in rows}
    return {s: found.get(s, 0) for s in wanted}
