"""The delivery queue in PostgreSQL (``delivery_queue``, migration 010): what is to be sent, when.

Every report to deliver (a schedule run's, or a report request's own) is a row with the
number of its next attempt and the time it is due, one row per (organisation, report)
(migration 022). The delivery agent enqueues a report when its final status arrives (due at
once); a failed attempt that may be retried moves its row's ``due_at`` to the end of the
backoff and frees its slot (nothing sleeps). Workers take due rows with
:func:`claim_due`: ``FOR UPDATE SKIP LOCKED`` plus a lease (``claimed_until``), so two
workers never attempt one row at the same time, and a worker that dies mid-attempt leaves a
lease that runs out and another worker takes the row over.

This is the cross-tenant path of the delivery worker (the connection's own role), except
:func:`pending_by_run`, which is tenant-scoped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import asyncpg

from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.base import DeliveryOrder
from stream_app.schemas.base import decode_event, encode_event
from stream_app.schemas.updates import ReportStatus


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    """A claimed row of the queue.

    Attributes:
        id: row id.
        source: who ordered the delivery (the :class:`~stream_app.delivery.worker.DeliverySource`
            name: ``schedule``, ``adhoc``).
        organization_id: the tenant.
        report_id: the report to deliver.
        run_id / schedule_id: the schedule run that ordered it, or None.
        attempt: the number of the attempt to make now (1-based).
        status: the report's final status, as the report agent published it.
    """

    id: int
    source: str
    organization_id: str
    report_id: str
    run_id: int | None
    schedule_id: str | None
    attempt: int
    status: ReportStatus


_UPSERT = (
    "INSERT INTO delivery_queue (source, organization_id, run_id, schedule_id, report_id,"
    " attempt, due_at, status, last_error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9)"
    " ON CONFLICT (organization_id, report_id) DO "
)


async def enqueue(
    conn: asyncpg.Connection, order: DeliveryOrder, status: ReportStatus, *, due_at: datetime
) -> bool:
    """Queue the first attempt of ``order``, due at ``due_at`` (UTC-aware).

    A report already queued is left as it is (a redelivered ``report-results`` message
    neither resets its attempts nor sends it twice): one row per (organisation, report).

    Returns:
        Whether a row was added.
    """
    row_id = await conn.fetchval(
        f"{_UPSERT} NOTHING RETURNING id", *_row(order, status, 1, due_at, None)
    )
    return row_id is not None


async def reschedule(
    conn: asyncpg.Connection,
    order: DeliveryOrder,
    status: ReportStatus,
    *,
    attempt: int,
    due_at: datetime,
    error: str,
) -> None:
    """Queue attempt number ``attempt`` of ``order`` for ``due_at`` and release any lease."""
    await conn.execute(
        f"{_UPSERT} UPDATE SET attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at,"
        " last_error = EXCLUDED.last_error, claimed_by = NULL, claimed_until = NULL",
        *_row(order, status, attempt, due_at, error),
    )


def _row(
    order: DeliveryOrder, status: ReportStatus, attempt: int, due_at: datetime, error: str | None
) -> tuple[object, ...]:
    return (
        order.source,
        order.organization_id,
        order.run_id,
        order.schedule_id,
        order.report_id,
        attempt,
        due_at,
        encode_event(status).decode(),
        error,
    )


async def remove(conn: asyncpg.Connection, organization_id: str, report_id: str) -> None:
    """Drop the row of a delivery that is over (delivered, skipped or failed for good)."""
    await conn.execute(
        "DELETE FROM delivery_queue WHERE organization_id = $1 AND report_id = $2",
        organization_id,
        report_id,
    )


async def is_queued(conn: asyncpg.Connection, organization_id: str, report_id: str) -> bool:
    """Whether the report has a pending delivery in the queue."""
    found = await conn.fetchval(
        "SELECT 1 FROM delivery_queue WHERE organization_id = $1 AND report_id = $2",
        organization_id,
        report_id,
    )
    return found is not None


async def due_organizations(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """Organisations with a due, unleased row, the one waiting longest first."""
    rows = await conn.fetch(
        "SELECT organization_id FROM delivery_queue"
        " WHERE due_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)"
        " GROUP BY organization_id ORDER BY min(due_at), organization_id",
        now,
    )
    return [r["organization_id"] for r in rows]


_API_ONLY = (
    " AND (EXISTS (SELECT 1 FROM reports r WHERE q.schedule_id IS NULL"
    " AND r.organization_id = q.organization_id AND r.id = q.report_id"
    " AND r.request->'delivery'->>'method' = 'api')"
    " OR EXISTS (SELECT 1 FROM schedules s WHERE s.organization_id = q.organization_id"
    " AND s.id = q.schedule_id AND s.delivery_method = 'api'))"
)


_QUEUED_COLUMNS = ", ".join(f.name for f in fields(QueuedDelivery))
"""The ``delivery_queue`` columns a lease reads, one per field of :class:`QueuedDelivery`."""


async def claim_due(
    conn: asyncpg.Connection,
    organization_id: str,
    now: datetime,
    *,
    limit: int,
    lease_s: float,
    worker_id: str,
    api_only: bool = False,
) -> list[QueuedDelivery]:
    """Lease up to ``limit`` due rows of one organisation for ``lease_s`` seconds.

    Rows another worker holds locked are skipped (``SKIP LOCKED``), rows under a running
    lease are not due; the leased rows are invisible to other claimers until the lease ends.
    A row whose stored status no longer decodes is dropped (it could never be delivered).
    ``api_only``: only rows whose target is ``api`` (no network: they need no delivery slot;
    the method is read from the report request or the schedule that ordered the row).
    """
    if limit <= 0:
        return []
    async with conn.transaction():
        rows = await conn.fetch(
            f"SELECT {_QUEUED_COLUMNS}"
            " FROM delivery_queue q WHERE organization_id = $1 AND due_at <= $2"
            " AND (claimed_until IS NULL OR claimed_until <= $2)"
            + (_API_ONLY if api_only else "")
            + " ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED",
            organization_id,
            now,
            limit,
        )
        if not rows:
            return []
        await conn.execute(
            "UPDATE delivery_queue SET claimed_by = $2, claimed_until = $3"
            " WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
            worker_id,
            now + timedelta(seconds=lease_s),
        )
    return [
        QueuedDelivery(**{**dict(r), "status": decode_event(r["status"].encode(), ReportStatus)})
        for r in rows
    ]


async def pending_by_run(
    conn: asyncpg.Connection, organization_id: str, run_ids: Iterable[int]
) -> dict[int, list[dict[str, object]]]:
    """The queued deliveries of some runs of one organisation (tenant-scoped).

    Returns:
        ``{run_id: [{"report_id", "next_attempt", "due_at" (ISO 8601 UTC), "last_error"}]}``.
    """
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT run_id, report_id, attempt, due_at, last_error FROM delivery_queue"
            " WHERE organization_id = $1 AND run_id = ANY($2::bigint[]) ORDER BY due_at",
            organization_id,
            list(run_ids),
        )
    out: dict[int, list[dict[str, object]]] = {}
    for r in rows:
        out.setdefault(r["run_id"], []).append(
            {
                "report_id": r["report_id"],
                "next_attempt": r["attempt"],
                "due_at": r["due_at"].isoformat(),
                "last_error": r["last_error"],
            }
        )
    return out
