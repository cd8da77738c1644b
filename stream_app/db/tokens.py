"""The ``tokens`` and ``token_revocations`` tables: issued API tokens and their revocations.

Part of the database layer; reads and writes those two tables only, each statement in the
organisation's tenant transaction (row-level security). The audit event of an issue or a
revocation is the caller's (:mod:`stream_app.db.audit_events`); inside one outer transaction
write it first: the tenant role set by :func:`~stream_app.db.tenancy.tenant_transaction` lasts
until the outer transaction ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from stream_app.db.tenancy import tenant_transaction


@dataclass(frozen=True, slots=True)
class Revocations:
    """An organisation's revocations in force.

    Attributes:
        jtis: revoked token ids.
        issued_before: every token issued before this instant is revoked (the latest such
            revocation); None when there is none.
        organization_created_at: when the organisation of this id was registered (None: no
            such row). A token issued more than :data:`CLOCK_SKEW` before it belongs to an
            earlier organisation of the same id (deleted by hand, its revocations with it)
            and is refused: an attacker round re-created a deleted organisation's id and its
            old tokens, a revoked one too, worked again.
        organization_deleted_at: when an organisation of this id was last deleted
            (``deleted_organizations``, migration 026), or None. With no row left every token
            of the id is refused: an operator's trial deleted an organisation by hand and its
            tokens went on reading its live tables, no longer revocable. A token issued before
            it is refused even when the id was registered again.
    """

    jtis: frozenset[str]
    issued_before: datetime | None
    organization_created_at: datetime | None = None
    organization_deleted_at: datetime | None = None

    def refusal(self, jti: str, issued_at: datetime | None) -> str | None:
        """Why a token with id ``jti`` issued at ``issued_at`` is refused, or None."""
        if jti in self.jtis:
            return "the token has been revoked"
        before = self.issued_before
        if before is not None and issued_at is not None and issued_at < before:
            return "the token has been revoked"
        created = self.organization_created_at
        deleted = self.organization_deleted_at
        if created is None and deleted is not None:
            return f"the token's organisation was deleted ({deleted.isoformat()})"
        if (
            deleted is not None
            and issued_at is not None
            and issued_at < deleted.replace(microsecond=0)
        ):
            # issued before the deletion (``iat`` is whole seconds: one of the deletion's own
            # second is not refused): the deleted organisation's, whatever registered the id
            # since (an attacker round: re-registered within a minute of the token's issue,
            # its created_at alone let it through; a re-registration right after the deletion,
            # as the synthetic loader's, keeps the tokens issued after it)
            return (
                f"the token was issued before its organisation was deleted"
                f" ({deleted.isoformat()}): it belongs to the deleted organisation"
            )
        if created is not None and issued_at is not None and issued_at < created - CLOCK_SKEW:
            return (
                "the token was issued before its organisation was registered"
                f" ({created.isoformat()}): it belongs to an earlier organisation of that id"
            )
        return None


CLOCK_SKEW = timedelta(seconds=60)
"""How far a token's ``iat`` (whole seconds, the minting host's clock) may precede its
organisation's ``created_at`` (PostgreSQL's clock) and still be the organisation's."""


async def record_issued(
    conn: asyncpg.Connection,
    *,
    jti: str,
    organization_id: str,
    subject: str,
    role: str,
    venues: list[str] | None,
    issued_at: datetime,
    expires_at: datetime,
) -> None:
    """Record an issued token (in the organisation's tenant transaction).

    Raises:
        asyncpg.ForeignKeyViolationError: the organisation does not exist.
    """
    async with tenant_transaction(conn, organization_id):
        await _insert_token(
            conn, jti, organization_id, subject, role, venues, issued_at, expires_at
        )


async def _insert_token(conn: asyncpg.Connection, *args: object) -> None:
    await conn.execute(
        "INSERT INTO tokens (jti, organization_id, subject, role, venue_scope, issued_at,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        *args,
    )


async def revoke(
    conn: asyncpg.Connection,
    organization_id: str,
    *,
    revoked_by: str,
    keep_until: datetime,
    jti: str | None = None,
    issued_before: datetime | None = None,
) -> int:
    """Revoke one token (``jti``) or all the organisation's issued before ``issued_before``.

    Args:
        keep_until: when the revocation may be forgotten (no token it names is valid later:
            the token's expiry, or ``issued_before`` plus the maximum lifetime).

    Returns:
        How many recorded tokens it revokes (tokens never recorded, e.g. minted by a test
        with the secret, are revoked too but not counted).

    Raises:
        ValueError: neither or both of ``jti`` and ``issued_before``.
    """
    if (jti is None) == (issued_before is None):
        raise ValueError("give exactly one of jti and issued_before")
    async with tenant_transaction(conn, organization_id):
        return await _revoke(conn, organization_id, revoked_by, keep_until, jti, issued_before)


async def _revoke(
    conn: asyncpg.Connection,
    organization_id: str,
    revoked_by: str,
    keep_until: datetime,
    jti: str | None,
    issued_before: datetime | None,
) -> int:
    await conn.execute(
        "INSERT INTO token_revocations (organization_id, jti, issued_before, revoked_by,"
        " keep_until) VALUES ($1, $2, $3, $4, $5)",
        organization_id,
        jti,
        issued_before,
        revoked_by,
        keep_until,
    )
    if jti is not None:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM tokens WHERE organization_id = $1 AND jti = $2",
            organization_id,
            jti,
        )
    else:
        count = await conn.fetchval(
            "SELECT count(*) FROM tokens WHERE organization_id = $1 AND issued_at < $2",
            organization_id,
            issued_before,
        )
    return count


async def fetch_revocations(
    conn: asyncpg.Connection, organization_id: str, now: datetime
) -> Revocations:
    """The organisation's revocations still in force at ``now``, its registration time and
    its last deletion's (tenant transaction)."""
    async with tenant_transaction(conn, organization_id):
        rows = await conn.fetch(
            "SELECT jti, issued_before FROM token_revocations"
            " WHERE organization_id = $1 AND keep_until > $2",
            organization_id,
            now,
        )
        created = await conn.fetchval(
            "SELECT created_at FROM organizations WHERE id = $1", organization_id
        )
        deleted = await conn.fetchval(
            "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1",
            organization_id,
        )
    befores = [r["issued_before"] for r in rows if r["issued_before"] is not None]
    return Revocations(
        frozenset(r["jti"] for r in rows if r["jti"] is not None),
        max(befores) if befores else None,
        created,
        deleted,
    )
