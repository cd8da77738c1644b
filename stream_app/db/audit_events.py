"""The one place that writes an ``audit_log`` row (migration 001).

Every audited action goes through :func:`record`, so how a row is written (today a plain
insert; later a hash-chained one) is decided here only.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
import orjson


async def record(
    conn: asyncpg.Connection,
    organization_id: str | None,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, object] | None = None,
) -> None:
    """Append one audit row.

    Args:
        conn: a connection (inside the caller's transaction, if any).
        organization_id: the tenant the action concerns (None for system-wide actions).
        actor: who acted (a user id, ``link:<jti>`` for a download link, ``system``).
        action: dotted verb, e.g. ``link.downloaded``, ``links.revoked``.
        target: what it acted on (a report id, a schedule id, a path).
        details: JSON-serialisable context (no secrets).

    Raises:
        asyncpg.PostgresError: the insert failed.
    """
    await conn.execute(
        "INSERT INTO audit_log (organization_id, actor, action, target, details)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)",
        organization_id,
        actor,
        action,
        target,
        orjson.dumps(dict(details or {})).decode(),
    )
