"""Issuing and revoking API tokens, recorded in PostgreSQL and in the audit log.

Used by ``wedding-engine token`` and ``POST /orgs/{org}/tokens/revoke``. Touches
``organizations`` (read), ``tokens``, ``token_revocations`` and, through
:func:`stream_app.db.audit_events.record`, ``audit_log``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from stream_app.db import audit_events
from stream_app.db import tokens as token_db
from stream_app.db.tenancy import (
    UnknownOrganizationError,
    fetch_organization,
    tenant_transaction,
)
from stream_app.schemas.tokens import IssuedToken, new_token
from stream_app.settings import Settings


@asynccontextmanager
async def _audited(
    conn: asyncpg.Connection,
    organization_id: str,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
) -> AsyncIterator[None]:
    """A tenant transaction of ``organization_id`` that first audits ``action`` on ``target``
    (:func:`stream_app.db.audit_events.record`): the audit row commits with the block."""
    async with tenant_transaction(conn, organization_id):
        await audit_events.record(conn, organization_id, actor, action, target, details)
        yield


async def issue(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    organization_id: str,
    subject: str,
    role: str,
    ttl_seconds: int,
    venues: list[str] | None = None,
    actor: str,
) -> IssuedToken:
    """Sign a token, record it in ``tokens`` and audit ``token.issued`` (one transaction).

    Raises:
        ValueError: ``--org`` names no organisation; ``--ttl`` is not within 1 s and
            ``settings.token_max_ttl_s``; an unknown ``--role``. Messages name the option.
    """
    if not 0 < ttl_seconds <= settings.token_max_ttl_s:
        raise ValueError(
            f"--ttl: must be between 1 and {settings.token_max_ttl_s} seconds"
            f" (WEDDING_TOKEN_MAX_TTL_S), got {ttl_seconds}"
        )
    try:
        await fetch_organization(conn, organization_id)
    except UnknownOrganizationError as exc:
        raise ValueError(exc.hint("--org", organization_id)) from None
    try:
        issued = new_token(
            settings.jwt_secret,
            user_id=subject,
            organization_id=organization_id,
            ttl_seconds=ttl_seconds,
            role=role,
            venues=venues,
            issuer=settings.token_issuer,
            audience=settings.token_audience,
        )
    except ValueError as exc:
        raise ValueError(f"--{exc}") from None
    details = {
        "subject": subject,
        "role": role,
        "venues": venues,
        "issued_at": issued.issued_at.isoformat(),
        "expires_at": issued.expires_at.isoformat(),
    }
    async with _audited(conn, organization_id, actor, "token.issued", issued.jti, details):
        await token_db.record_issued(
            conn,
            jti=issued.jti,
            organization_id=organization_id,
            subject=subject,
            role=role,
            venues=None if venues is None else sorted(set(venues)),
            issued_at=issued.issued_at,
            expires_at=issued.expires_at,
        )
    return issued


REVOCATION_CLOCK_SKEW_S = 300
"""How far past now a revocation time may lie, seconds: clocks of the caller and the server
may differ by that much. Later is refused: "every token issued before 9999-01-01" would also
refuse every token issued from now on, and nothing could undo it but the database."""


MAX_UTC_OFFSET = timedelta(hours=14)
"""The furthest any time zone is from UTC (Kiribati's Line Islands, UTC+14)."""


def check_revocation_time(issued_before: datetime) -> datetime:
    """``issued_before`` if a revocation may name it: with a time zone whose offset is within
    ±14:00 (:data:`MAX_UTC_OFFSET`), not before 1970 (UTC), and not later than now plus
    :data:`REVOCATION_CLOCK_SKEW_S`.

    Raises:
        ValueError: the reason (the caller names its field: ``$.before``, ``--before``).
    """
    offset = issued_before.utcoffset()
    if offset is None:
        raise ValueError("give a time zone (e.g. 2026-12-05T08:00:00+00:00)")
    if abs(offset) > MAX_UTC_OFFSET:  # no zone is further from UTC (an attacker round: +14:01)
        raise ValueError(
            f"{issued_before.isoformat()}: the offset is beyond ±14:00, no place's offset"
        )
    in_utc: datetime | None
    try:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC (an attacker round's 500)
        in_utc = issued_before.astimezone(UTC)
    except OverflowError:  # past either end of the calendar in UTC: say which
        in_utc = None if issued_before.year < 1970 else datetime.max.replace(tzinfo=UTC)
    if in_utc is None or in_utc.year < 1970:
        raise ValueError(
            f"{issued_before.isoformat()} is before 1970 (UTC): no token is that old, so it"
            " would revoke nothing"
        )
    latest = datetime.now(UTC) + timedelta(seconds=REVOCATION_CLOCK_SKEW_S)
    if issued_before > latest:
        raise ValueError(
            f"{issued_before.isoformat()} is in the future (later than now +"
            f" {REVOCATION_CLOCK_SKEW_S} s): it would also refuse every token issued from now"
            " on; to revoke every token so far, give the current time"
        )
    return issued_before


async def revoke(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    organization_id: str,
    actor: str,
    jti: str | None = None,
    issued_before: datetime | None = None,
) -> int:
    """Revoke one token or all the organisation's issued before a time; audit
    ``token.revoked`` (one transaction). In force on every worker within
    ``settings.revocation_cache_s`` seconds (:mod:`stream_app.web.revocation`).

    Returns:
        How many recorded tokens the revocation covers.

    Raises:
        ValueError: ``issued_before`` refused by :func:`check_revocation_time`.
    """
    if issued_before is not None:
        check_revocation_time(issued_before)
    now = datetime.now(UTC)
    max_ttl = timedelta(seconds=settings.token_max_ttl_s)
    keep_until = (issued_before or now) + max_ttl if jti is None else now + max_ttl
    details = {"jti": jti, "issued_before": issued_before.isoformat() if issued_before else None}
    async with _audited(conn, organization_id, actor, "token.revoked", jti or "*", details):
        count = await token_db.revoke(
            conn,
            organization_id,
            revoked_by=actor,
            keep_until=keep_until,
            jti=jti,
            issued_before=issued_before,
        )
    return count
