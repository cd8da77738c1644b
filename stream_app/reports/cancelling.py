"""Cancelling a report in PostgreSQL: the status change, its audit record, the message.

Part of the reports layer, with no worker behind it (PostgreSQL and the wire schemas only):
the worker's :func:`stream_app.reports.cancel.cancel_report` and the client of the CLI
(:func:`stream_app.client.cancel_report`) both cancel through :func:`cancel_in_db`, then
publish the status it returns.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from stream_app.db import audit_events
from stream_app.db import reports as report_db
from stream_app.db.tenancy import tenant_transaction
from stream_app.schemas.updates import ReportStatus


async def cancel_in_db(
    conn: asyncpg.Connection,
    organization_id: str,
    report_id: str,
    *,
    actor: str,
    owner: str | None = None,
) -> tuple[str | None, ReportStatus | None]:
    """Move a queued or processing report of ``organization_id`` to ``cancelled``.

    ``actor`` (who asked) is recorded in the audit log with the cancellation, in the same
    transaction (again for a repeated cancel: :func:`stream_app.db.reports.cancel` answers
    ``cancelled`` for both).

    Returns:
        ``(outcome, status)``: ``outcome`` is ``"cancelled"`` when the report is cancelled,
        :data:`stream_app.db.reports.NOT_THE_OWNERS` when ``owner`` is given and the report
        is another user's, else its final status, or None when the organisation has no such
        report; ``status`` is the ``cancelled`` message to publish, None when there is
        nothing to publish.
    """
    async with tenant_transaction(conn, organization_id):
        outcome = await report_db.cancel(conn, organization_id, report_id, owner)
        if outcome == "cancelled":
            await audit_events.record(
                conn, organization_id, actor, "report.status", report_id, {"status": outcome}
            )
    rec = await report_db.fetch_report(conn, organization_id, report_id)
    if outcome != "cancelled" or rec is None:
        return outcome, None
    return outcome, ReportStatus(
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
