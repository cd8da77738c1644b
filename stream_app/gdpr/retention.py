"""Retention rules per organisation and the job that applies them.

A rule (table ``retention_rules``) keeps, in whole days, report files (``artifacts_days``),
report rows (``report_rows_days``) and delivery log rows (``delivery_log_days``); ``None``
keeps them for ever. The job runs once per interval (``WEDDING_RETENTION_INTERVAL_S``) across
all workers: each worker tries to claim the interval's row in ``retention_runs`` (its primary
key lets exactly one succeed, as schedule runs are claimed); the winner applies every rule
and records one audit event per organisation with the counts.

What expires (``now`` − days, UTC):

- artifacts: files of reports in a final state (``completed``, ``failed``, ``cancelled``)
  generated (or, never generated, last updated) before the cut-off; the row stays, without
  artifacts or cache key;
- report rows: reports in a final state created before the cut-off, with their files;
- delivery log rows finished before the cut-off.

Spans tenants: it reads every organisation's rule (the narrow role of the deployment).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from stream_app.db import audit_events
from stream_app.db.rows import status_count
from stream_app.db.tenancy import tenant_transaction
from stream_app.errors import WeddingError
from stream_app.gdpr.artifacts import TERMINAL, remove_report_dirs
from stream_app.gdpr.requests import serialize

FIELDS: tuple[str, ...] = ("artifacts_days", "report_rows_days", "delivery_log_days")
MAX_DAYS = 36_500
"""Longest period a rule may name (100 years; the database checks it too)."""


class RuleError(WeddingError, ValueError):
    """A retention rule that cannot be stored; ``field`` names the offending field."""

    retriable = False

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """An organisation's retention, in whole days (``None``: kept for ever).

    Attributes:
        artifacts_days: days report files are kept after generation.
        report_rows_days: days report rows are kept after the request.
        delivery_log_days: days delivery log rows are kept after the attempt.
    """

    artifacts_days: int | None = None
    report_rows_days: int | None = None
    delivery_log_days: int | None = None

    def as_dict(self) -> dict[str, int | None]:
        """The rule as JSON-ready fields."""
        return {f: getattr(self, f) for f in FIELDS}


def parse_rule(body: Any) -> RetentionRule:
    """The rule of a ``PUT /orgs/{org}/retention`` body: an object with only :data:`FIELDS`,
    each ``null`` or an integer from 1 to :data:`MAX_DAYS`; a missing field is ``null``.

    Raises:
        RuleError: not an object (``$``), an unknown field, or a bad value (``$.<field>``).
    """
    if not isinstance(body, dict):
        raise RuleError("$", "the body must be a JSON object")
    for key in body:
        if key not in FIELDS:
            raise RuleError(f"$.{key}", f"unknown field; known: {', '.join(FIELDS)}")
    values: dict[str, int | None] = {}
    for name in FIELDS:
        value = body.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS
        ):
            raise RuleError(f"$.{name}", f"must be null or an integer from 1 to {MAX_DAYS}")
        values[name] = value
    return RetentionRule(**values)


async def store_rule(
    conn: asyncpg.Connection, organization_id: str, rule: RetentionRule, actor: str
) -> None:
    """Create or replace ``organization_id``'s rule (tenant scope), then audit the change."""
    async with tenant_transaction(conn, organization_id):
        await conn.execute(
            "INSERT INTO retention_rules (organization_id, artifacts_days, report_rows_days,"
            " delivery_log_days, updated_by) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (organization_id) DO UPDATE SET"
            " artifacts_days = EXCLUDED.artifacts_days,"
            " report_rows_days = EXCLUDED.report_rows_days,"
            " delivery_log_days = EXCLUDED.delivery_log_days,"
            " updated_by = EXCLUDED.updated_by, updated_at = now()",
            organization_id,
            rule.artifacts_days,
            rule.report_rows_days,
            rule.delivery_log_days,
            actor,
        )
        await audit_events.record(
            conn, organization_id, actor, "retention.rule_set", organization_id, rule.as_dict()
        )


async def fetch_rule(conn: asyncpg.Connection, organization_id: str) -> RetentionRule:
    """``organization_id``'s rule (every field ``None`` when it has none)."""
    row = await conn.fetchrow(
        "SELECT artifacts_days, report_rows_days, delivery_log_days FROM retention_rules"
        " WHERE organization_id = $1",
        organization_id,
    )
    return RetentionRule() if row is None else RetentionRule(*(row[f] for f in FIELDS))


def slot_start(now: datetime, interval_s: float) -> datetime:
    """Start of the interval holding ``now``: intervals of ``interval_s`` seconds counted from
    the Unix epoch (UTC), so every worker computes the same one."""
    epoch = now.timestamp()
    return datetime.fromtimestamp(math.floor(epoch / interval_s) * interval_s, UTC)


async def claim(conn: asyncpg.Connection, start: datetime, worker: str) -> bool:
    """Claim the run of the interval starting at ``start``; True for the one claimer."""
    row = await conn.fetchrow(
        "INSERT INTO retention_runs (slot_start, claimed_by) VALUES ($1, $2)"
        " ON CONFLICT (slot_start) DO NOTHING RETURNING slot_start",
        start,
        worker,
    )
    return row is not None


async def apply_rule(
    conn: asyncpg.Connection,
    root: Path,
    organization_id: str,
    rule: RetentionRule,
    now: datetime,
) -> dict[str, int]:
    """Delete what ``rule`` lets expire at ``now`` for one organisation (module docstring);
    call it inside :func:`stream_app.db.tenancy.tenant_transaction` of the organisation.

    Returns:
        ``{"artifact_files", "artifact_reports", "report_rows", "delivery_log_rows"}``.
    """
    counts = {"artifact_files": 0, "artifact_reports": 0, "report_rows": 0, "delivery_log_rows": 0}

    async def remove_files(rows: list[asyncpg.Record], count: str) -> None:
        """Count ``rows`` (reports) as ``count`` and delete their folders."""
        ids = [r["id"] for r in rows]
        counts[count] = len(ids)
        counts["artifact_files"] += await asyncio.to_thread(
            remove_report_dirs, root, organization_id, ids
        )

    if rule.report_rows_days is not None:
        cutoff = now - timedelta(days=rule.report_rows_days)
        gone = await conn.fetch(
            "DELETE FROM reports WHERE organization_id = $1 AND status = ANY($2::text[])"
            " AND created_at < $3 RETURNING id",
            organization_id,
            list(TERMINAL),
            cutoff,
        )
        await remove_files(gone, "report_rows")
    if rule.artifacts_days is not None:
        cutoff = now - timedelta(days=rule.artifacts_days)
        rows = await conn.fetch(
            "UPDATE reports SET artifacts = '[]'::jsonb, cache_key = NULL, cache = NULL,"
            " metadata = metadata || $4::jsonb, updated_at = now()"
            " WHERE organization_id = $1 AND status = ANY($2::text[])"
            " AND artifacts <> '[]'::jsonb AND coalesce(generated_at, updated_at) < $3"
            " RETURNING id",
            organization_id,
            list(TERMINAL),
            cutoff,
            orjson.dumps({"artifacts_purged": "retention"}).decode(),
        )
        await remove_files(rows, "artifact_reports")
    if rule.delivery_log_days is not None:
        cutoff = now - timedelta(days=rule.delivery_log_days)
        counts["delivery_log_rows"] = status_count(
            await conn.execute(
                "DELETE FROM delivery_log WHERE organization_id = $1 AND finished_at < $2",
                organization_id,
                cutoff,
            )
        )
    return counts


async def run_once(
    pool: asyncpg.Pool,
    root: Path,
    worker: str,
    interval_s: float,
    now: datetime | None = None,
    *,
    system_pool: asyncpg.Pool | None = None,
) -> dict[str, dict[str, int]] | None:
    """Claim the current interval and apply every organisation's rule; None when another
    worker (or an earlier call) has claimed it.

    Claiming the interval and listing the rules span tenants: they run on ``system_pool``
    (the system login; default ``pool``). Each organisation's deletions and its audit event
    (``retention.run``, actor ``system:retention``, target the interval start, details the
    counts) run on ``pool`` in its tenant scope (row-level security), and commit together.

    Returns:
        ``{organization_id: counts}`` (see :func:`apply_rule`).
    """
    now = now or datetime.now(UTC)
    start = slot_start(now, interval_s)
    system_pool = system_pool or pool
    async with system_pool.acquire() as sys_conn:
        if not await claim(sys_conn, start, worker):
            return None
        rules = await sys_conn.fetch(
            "SELECT organization_id, artifacts_days, report_rows_days, delivery_log_days"
            " FROM retention_rules ORDER BY organization_id"
        )
    out: dict[str, dict[str, int]] = {}
    async with pool.acquire() as conn:
        for r in rules:
            rule = RetentionRule(*(r[f] for f in FIELDS))
            async with tenant_transaction(conn, r["organization_id"]):
                await serialize(conn, r["organization_id"])  # not beside an erasure's purge
                counts = await apply_rule(conn, root, r["organization_id"], rule, now)
                await audit_events.record(
                    conn,
                    r["organization_id"],
                    "system:retention",
                    "retention.run",
                    start.isoformat(),
                    {**counts, "rule": rule.as_dict(), "worker": worker},
                )
            out[r["organization_id"]] = counts
    async with system_pool.acquire() as sys_conn:
        await sys_conn.execute(
            "UPDATE retention_runs SET finished_at = now(), counts = $2::jsonb"
            " WHERE slot_start = $1",
            start,
            orjson.dumps(out).decode(),
        )
    return out
