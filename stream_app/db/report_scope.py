"""Which venues a stored report covers (its request's ``data_filters.venue_id``).

Part of the database layer; reads ``reports`` in the organisation's tenant transaction. Used
to let a venue-scoped token see only reports limited to its venues.
"""

from __future__ import annotations

import asyncpg
import orjson

from stream_app.db.tenancy import tenant_read


async def report_venues(
    conn: asyncpg.Connection, organization_id: str, report_id: str
) -> list[str] | None:
    """The venue ids report ``report_id`` is limited to; None for all venues or no such report
    (a tenant read: :func:`~stream_app.db.tenancy.tenant_read`)."""
    async with tenant_read(conn, organization_id):
        raw = await conn.fetchval(
            "SELECT request -> 'data_filters' -> 'venue_id' FROM reports"
            " WHERE organization_id = $1 AND id = $2",
            organization_id,
            report_id,
        )
    if raw is None:
        return None
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return [str(v) for v in value] if isinstance(value, list) else None
