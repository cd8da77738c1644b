"""The delivery log: one ``delivery_log`` row per delivery attempt and its outcome.

The log is the record of every delivery, a schedule run's or a report request's own (whose
rows have no run and no schedule): the latest row of a report is its delivery outcome."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg

from stream_app.db import audit_events
from stream_app.db.tenancy import tenant_transaction
from stream_app.delivery.redact import clip

LOG_OUTCOMES = frozenset({"delivered", "retrying", "failed", "skipped"})


@dataclass(frozen=True, slots=True)
class DeliveryLogEntry:
    """One row of the delivery log.

    Attributes:
        id: row id (attempts of a report are in id order).
        run_id: the run (``None`` once the schedule was deleted, and for a report request's
            own delivery).
        schedule_id: the schedule (``None`` for a report request's own delivery).
        organization_id / report_id: what was delivered.
        method: ``email``, ``webhook``, ``sftp`` or ``api``.
        attempt: 1-based attempt number; 0 when nothing was attempted (skipped, or the
            report itself failed).
        outcome: ``delivered``, ``retrying`` (failed, another attempt follows), ``failed``
            (final) or ``skipped``.
        retriable: whether the attempt's error was retriable.
        detail: server reply or cause.
        target: where it went (no secrets).
        started_at / finished_at: the attempt's wall-clock span (UTC).
    """

    id: int
    run_id: int | None
    schedule_id: str | None
    organization_id: str
    report_id: str
    method: str
    attempt: int
    outcome: str
    retriable: bool
    detail: str | None
    target: str | None
    started_at: datetime
    finished_at: datetime


async def log_attempt(
    conn: asyncpg.Connection,
    *,
    run_id: int | None,
    schedule_id: str | None,
    organization_id: str,
    report_id: str,
    method: str,
    attempt: int,
    outcome: str,
    retriable: bool = False,
    detail: str | None,
    target: str | None,
    started_at: datetime,
    finished_at: datetime,
) -> int:
    """Append one attempt to the log (in the organisation's tenant transaction); the row id.

    The attempt is also recorded in the audit log (``delivery.attempt``, actor ``delivery``,
    outcome ``failed`` for ``retrying``/``failed``), in the same transaction. The audit row
    keeps the method, attempt and outcome, not the target (recipients are personal data).

    Raises:
        ValueError: ``outcome`` is not one of :data:`LOG_OUTCOMES`.
    """
    if outcome not in LOG_OUTCOMES:
        raise ValueError(f"outcome: {outcome!r} is not one of {sorted(LOG_OUTCOMES)}")
    async with tenant_transaction(conn, organization_id):
        row_id: int = await conn.fetchval(
            "INSERT INTO delivery_log (run_id, schedule_id, organization_id, report_id, method,"
            " attempt, outcome, retriable, detail, target, started_at, finished_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            run_id,
            schedule_id,
            organization_id,
            report_id,
            method,
            attempt,
            outcome,
            retriable,
            None if detail is None else clip(detail),  # receivers choose parts of it
            None if target is None else clip(target),
            started_at,
            finished_at,
        )
        await audit_events.record(
            conn,
            organization_id,
            "delivery",
            "delivery.attempt",
            report_id,
            {
                "schedule_id": schedule_id,
                "run_id": run_id,
                "method": method,
                "attempt": attempt,
                "delivery_outcome": outcome,
                "retriable": retriable,
                "delivery_log_id": row_id,
            },
            outcome="failed" if outcome in ("retrying", "failed") else "ok",
        )
    return row_id


_SELECT = f"SELECT {', '.join(f.name for f in fields(DeliveryLogEntry))} FROM delivery_log"
"""The log's columns, one per field of :class:`DeliveryLogEntry` (same names)."""


def _entry(row: asyncpg.Record) -> DeliveryLogEntry:
    return DeliveryLogEntry(**dict(row))


async def fetch_run_log(conn: asyncpg.Connection, run_id: int) -> list[DeliveryLogEntry]:
    """Every logged attempt of a run, in order (scheduler path, all tenants)."""
    rows = await conn.fetch(f"{_SELECT} WHERE run_id = $1 ORDER BY id", run_id)
    return [_entry(r) for r in rows]


async def fetch_schedule_log(
    conn: asyncpg.Connection, organization_id: str, schedule_id: str, *, limit: int = 200
) -> list[DeliveryLogEntry]:
    """The latest logged attempts of a schedule, newest first (tenant-scoped)."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            f"{_SELECT} WHERE organization_id = $1 AND schedule_id = $2 ORDER BY id DESC LIMIT $3",
            organization_id,
            schedule_id,
            limit,
        )
    return [_entry(r) for r in rows]


async def report_log(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> list[DeliveryLogEntry]:
    """Every logged attempt of one report of ``organization_id``, in order. Opens no
    transaction: call it inside the organisation's
    :func:`~stream_app.db.tenancy.tenant_transaction`."""
    rows = await conn.fetch(
        f"{_SELECT} WHERE organization_id = $1 AND report_id = $2 ORDER BY id",
        organization_id,
        report_id,
    )
    return [_entry(r) for r in rows]


async def final_outcomes(
    conn: asyncpg.Connection, organization_id: str, run_id: int
) -> dict[str, str]:
    """The latest logged outcome of each report of run ``(organization_id, run_id)``:
    ``{report_id: outcome}``. Opens no transaction: call it inside the organisation's
    :func:`~stream_app.db.tenancy.tenant_transaction`."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (report_id) report_id, outcome FROM delivery_log"
        " WHERE organization_id = $1 AND run_id = $2 ORDER BY report_id, id DESC",
        organization_id,
        run_id,
    )
    return {r["report_id"]: r["outcome"] for r in rows}


async def final_outcome(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> str | None:
    """The latest logged outcome of report ``(organization_id, report_id)``, or None. Opens
    no transaction: call it inside the organisation's
    :func:`~stream_app.db.tenancy.tenant_transaction`."""
    outcome: str | None = await conn.fetchval(
        "SELECT outcome FROM delivery_log WHERE organization_id = $1 AND report_id = $2"
        " ORDER BY id DESC LIMIT 1",
        organization_id,
        report_id,
    )
    return outcome
