"""Is a token revoked? PostgreSQL's ``token_revocations``, cached per worker for a bound.

Part of the HTTP layer; reads ``token_revocations`` only. Each worker keeps an
organisation's revocations for ``settings.revocation_cache_s`` seconds (5 by default) before
reading them again, so **a revocation is in force on every worker at most
``revocation_cache_s`` seconds (plus one read's duration) after it is committed** (0 reads
PostgreSQL on every request).

The cache is ``async-lru``'s (one entry per organisation, expiring ``revocation_cache_s``
after it was read): requests arriving while an organisation's revocations are being read
wait for that one read instead of each starting its own, so an expiry under load costs one
query, not one per request in flight.
"""

from __future__ import annotations

from datetime import UTC, datetime

from async_lru import alru_cache

from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.db.tokens import Revocations, fetch_revocations
from stream_app.web.auth import Principal

MAX_ORGANIZATIONS = 100_000
"""Organisations whose revocations one worker keeps at once (least recently used dropped)."""


async def _read(organization_id: str) -> Revocations:
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        return await fetch_revocations(conn, organization_id, datetime.now(UTC))


_cached_read = alru_cache(maxsize=MAX_ORGANIZATIONS, ttl=settings.revocation_cache_s or None)(_read)


async def revocations(organization_id: str) -> Revocations:
    """The organisation's revocations in force, at most ``revocation_cache_s`` old (read
    once for all the requests that ask while it is read; a failed read is not kept)."""
    if settings.revocation_cache_s <= 0:
        return await _read(organization_id)
    return await _cached_read(organization_id)


async def is_revoked(principal: Principal) -> bool:
    """Whether ``principal``'s token is revoked (see the module docstring for the bound)."""
    return await refusal(principal) is not None


async def refusal(principal: Principal) -> str | None:
    """Why ``principal``'s token is refused (revoked, or issued before its organisation was
    registered: :meth:`~stream_app.db.tokens.Revocations.refusal`), or None."""
    found = await revocations(principal.organization_id)
    return found.refusal(principal.jti, principal.issued_at)
