"""Download links in PostgreSQL (migration 010): the links a delivery handed out, and their
revocation per report and per schedule.

A link (:mod:`stream_app.delivery.api`) carries its report id, schedule id and issue time.
Revoking a report's or a schedule's links stores a ``revoked_at`` instant; a link issued at
or before it is refused at download (:func:`check_not_revoked`), whatever its expiry.
Deleting a schedule revokes its links (a trigger of migration 010). Everything here is
tenant-scoped except :func:`record_issued`, the delivery worker's write.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import asyncpg

from stream_app.db.tenancy import tenant_read, tenant_transaction
from stream_app.db.tokens import CLOCK_SKEW
from stream_app.delivery.api import LinkClaims, LinkError, LinkTargetGoneError
from stream_app.delivery.base import IssuedLink

Scope = Literal["report", "schedule"]


async def record_issued(
    conn: asyncpg.Connection,
    *,
    organization_id: str,
    report_id: str,
    schedule_id: str | None,
    run_id: int | None,
    method: str,
    links: Iterable[IssuedLink],
) -> int:
    """Store the links one delivery handed out; returns how many.

    Raises:
        asyncpg.PostgresError: the insert failed (e.g. a repeated link id).
    """
    rows = [
        (
            link.link_id,
            organization_id,
            report_id,
            schedule_id,
            run_id,
            method,
            link.format,
            link.url,
            link.issued_at,
            link.expires_at,
        )
        for link in links
    ]
    if rows:
        await conn.executemany(
            "INSERT INTO download_links (id, organization_id, report_id, schedule_id, run_id,"
            " method, format, url, issued_at, expires_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            rows,
        )
    return len(rows)


async def revoke(
    conn: asyncpg.Connection, organization_id: str, scope: Scope, target_id: str, *, actor: str
) -> datetime:
    """Revoke every link of a report or schedule issued until now (tenant-scoped).

    Returns:
        The revocation instant (UTC): links issued at or before it are refused.
    """
    async with tenant_transaction(conn, organization_id):
        revoked_at: datetime = await conn.fetchval(
            "INSERT INTO download_link_revocations"
            " (organization_id, scope, target_id, revoked_at, revoked_by)"
            " VALUES ($1, $2, $3, clock_timestamp(), $4)"
            " ON CONFLICT (organization_id, scope, target_id) DO UPDATE"
            " SET revoked_at = GREATEST(download_link_revocations.revoked_at,"
            " EXCLUDED.revoked_at), revoked_by = EXCLUDED.revoked_by RETURNING revoked_at",
            organization_id,
            scope,
            target_id,
            actor,
        )
    return revoked_at


async def check_not_revoked(conn: asyncpg.Connection, claims: LinkClaims) -> None:
    """Refuse a verified link whose report or schedule had its links revoked after issue, or
    whose organisation is gone.

    Raises:
        LinkError: the link was issued at or before a revocation of its report or schedule.
        LinkTargetGoneError: the link's organisation was deleted (a tombstone of migration
            026 and no row), or the link was signed before the last deletion of its id, or
            before its id was registered (the link belongs to an earlier organisation of that
            id). Attacker rounds: a link of a deleted organisation still downloaded its file
            from a worker holding its unwrapped data key; then, with the id registered again
            within a minute of the link's signing, the registration time alone let it
            through.
    """
    async with tenant_transaction(conn, claims.organization_id):
        rows = await conn.fetch(
            "SELECT scope, revoked_at FROM download_link_revocations"
            " WHERE organization_id = $1 AND ((scope = 'report' AND target_id = $2)"
            " OR (scope = 'schedule' AND target_id = $3)) AND revoked_at >= $4",
            claims.organization_id,
            claims.report_id,
            claims.schedule_id,
            claims.issued_at,
        )
        created = await conn.fetchval(
            "SELECT created_at FROM organizations WHERE id = $1", claims.organization_id
        )
        deleted = await conn.fetchval(
            "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1",
            claims.organization_id,
        )
    if rows:
        r = min(rows, key=lambda r: r["scope"])
        raise LinkError(f"link revoked: its {r['scope']}'s links were revoked at {r['revoked_at']}")
    if created is None:
        raise LinkTargetGoneError("the link's organisation was deleted")
    if deleted is not None and claims.issued_at < deleted:
        raise LinkTargetGoneError(
            f"the link was signed before its organisation was deleted ({deleted.isoformat()}):"
            " it belongs to the deleted organisation"
        )
    if claims.issued_at < created - CLOCK_SKEW:
        raise LinkTargetGoneError(
            "the link was signed before its organisation was registered"
            f" ({created.isoformat()}): it belongs to an earlier organisation of that id"
        )


async def links_of_reports(
    conn: asyncpg.Connection, organization_id: str, report_ids: Iterable[str]
) -> dict[str, list[dict[str, object]]]:
    """The links handed out for some reports of one organisation (a tenant read:
    :func:`~stream_app.db.tenancy.tenant_read`).

    Returns:
        ``{report_id: [{"format", "url", "method", "run_id", "issued_at", "expires_at",
        "revoked"}]}``, oldest first; ``revoked`` is true once a revocation covers the link.
    """
    async with tenant_read(conn, organization_id):
        rows = await conn.fetch(
            "SELECT l.report_id, l.format, l.url, l.method, l.run_id, l.issued_at, l.expires_at,"
            " EXISTS (SELECT 1 FROM download_link_revocations v"
            "  WHERE v.organization_id = l.organization_id AND v.revoked_at >= l.issued_at"
            "  AND ((v.scope = 'report' AND v.target_id = l.report_id)"
            "   OR (v.scope = 'schedule' AND v.target_id = l.schedule_id))) AS revoked"
            " FROM download_links l WHERE l.organization_id = $1 AND l.report_id = ANY($2::text[])"
            " ORDER BY l.issued_at, l.id",
            organization_id,
            list(report_ids),
        )
    out: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        out.setdefault(r["report_id"], []).append(
            {
                "format": r["format"],
                "url": r["url"],
                "method": r["method"],
                "run_id": r["run_id"],
                "issued_at": r["issued_at"].isoformat(),
                "expires_at": r["expires_at"].isoformat(),
                "revoked": r["revoked"],
            }
        )
    return out
