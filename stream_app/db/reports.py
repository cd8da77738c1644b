"""The ``reports`` table: each report request, its status, artifacts and error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from stream_app.db.tenancy import tenant_transaction


@dataclass(frozen=True, slots=True)
class ReportRecord:
    """A stored report status (see :class:`stream_app.schemas.updates.ReportStatus`)."""

    id: str
    organization_id: str
    report_type: str
    status: str
    artifacts: list[dict[str, Any]]
    error: str | None
    processing_ms: float | None
    created_at: datetime
    updated_at: datetime


async def insert_queued(
    conn: asyncpg.Connection,
    *,
    report_id: str,
    organization_id: str,
    user_id: str,
    report_type: str,
    request: dict[str, Any],
) -> bool:
    """Record a new request as ``queued``; False if a report with this id already exists."""
    status = await conn.execute(
        "INSERT INTO reports (id, organization_id, user_id, report_type, status, request)"
        " VALUES ($1, $2, $3, $4, 'queued', $5::jsonb) ON CONFLICT (id) DO NOTHING",
        report_id,
        organization_id,
        user_id,
        report_type,
        orjson.dumps(request).decode(),
    )
    return bool(status.endswith(" 1"))


async def claim_processing(
    conn: asyncpg.Connection, report_id: str, *, stale_after_s: float = 300.0
) -> bool:
    """Move a report from ``queued`` to ``processing`` for this caller; True if it got it.

    One generation at a time: a report already ``processing`` is taken over only when its
    last change is older than ``stale_after_s`` seconds (its worker died). A redelivered or
    doubly consumed request therefore does not generate the report twice at once.
    """
    status = await conn.execute(
        "UPDATE reports SET status = 'processing', updated_at = now() WHERE id = $1 AND"
        " (status = 'queued' OR (status = 'processing'"
        "  AND updated_at < now() - make_interval(secs => $2)))",
        report_id,
        stale_after_s,
    )
    return bool(status.endswith(" 1"))


async def set_status(
    conn: asyncpg.Connection,
    report_id: str,
    status: str,
    *,
    artifacts: list[dict[str, Any]] | None = None,
    error: str | None = None,
    processing_ms: float | None = None,
) -> None:
    """Move a report to ``status`` (with its artifacts, error and timing when given)."""
    await conn.execute(
        "UPDATE reports SET status = $2, artifacts = COALESCE($3::jsonb, artifacts),"
        " error = $4, processing_ms = COALESCE($5, processing_ms), updated_at = now()"
        " WHERE id = $1",
        report_id,
        status,
        orjson.dumps(artifacts).decode() if artifacts is not None else None,
        error,
        processing_ms,
    )


async def fetch_report(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> ReportRecord | None:
    """A report of ``organization_id`` by id (tenant transaction); None when not found."""
    async with tenant_transaction(conn, organization_id):
        row = await conn.fetchrow(
            "SELECT id, organization_id, report_type, status, artifacts, error, processing_ms,"
            " created_at, updated_at FROM reports WHERE organization_id = $1 AND id = $2",
            organization_id,
            report_id,
        )
    if row is None:
        return None
    return ReportRecord(
        id=row["id"],
        organization_id=row["organization_id"],
        report_type=row["report_type"],
        status=row["status"],
        artifacts=orjson.loads(row["artifacts"]),
        error=row["error"],
        processing_ms=row["processing_ms"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
