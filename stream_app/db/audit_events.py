"""The one way to append an event to ``audit_log`` (token issue and revocation, ...).

Part of the database layer; writes ``audit_log`` only. Callers go through :func:`record` so
the storage of an event (e.g. a hash chain per organisation) changes in one place.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


async def record(
    conn: asyncpg.Connection,
    organization_id: str | None,
    actor: str,
    action: str,
    target: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one event to ``audit_log`` on ``conn`` (inside the caller's transaction, if any).

    Args:
        organization_id: the tenant the event concerns (None for a system event).
        actor: who acted (a token's subject, ``cli:<user>``, ``scheduler``).
        action: dotted verb, e.g. ``token.issued``, ``token.revoked``.
        target: what it acted on (a token id, a report id), if anything.
        details: JSON-ready facts of the event.

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
        orjson.dumps(details or {}).decode(),
    )
