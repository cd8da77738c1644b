"""Audit events: one function that appends a row to ``audit_log``.

Part of the database layer; it writes only ``audit_log``. Minimal version (the GDPR branch):
the hash-chained log is built on the same signature by another branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson


async def record(
    conn: asyncpg.Connection,
    organization_id: str | None,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any],
) -> None:
    """Append one audit event.

    Args:
        conn: a connection (inside the caller's transaction, if any: the event then commits
            or rolls back with the action it records).
        organization_id: the tenant concerned; None for an event of no tenant.
        actor: who acted (a user id, or ``system:<job>`` for a scheduled job).
        action: what happened, dotted (``gdpr.erasure.completed``, ``retention.run``).
        target: the object acted on (an id), or None.
        details: JSON-serialisable facts about the event (counts, ids). Never personal data:
            the log is append-only, so nothing written here can be erased later.

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
        orjson.dumps(dict(details)).decode(),
    )
