"""Is a token revoked? PostgreSQL's ``token_revocations``, cached per worker for a bound.

Part of the HTTP layer; reads ``token_revocations`` only. Each worker keeps an
organisation's revocations for ``settings.revocation_cache_s`` seconds (5 by default) before
reading them again, so **a revocation is in force on every worker at most
``revocation_cache_s`` seconds after it is committed** (0 reads PostgreSQL on every request).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from stream_app.app import settings
from stream_app.db.pool import get_pool
from stream_app.db.tokens import Revocations, fetch_revocations
from stream_app.web.auth import Principal

_cache: dict[str, tuple[float, Revocations]] = {}
"""organization_id → (monotonic time read, its revocations)."""


async def revocations(organization_id: str) -> Revocations:
    """The organisation's revocations in force, at most ``revocation_cache_s`` old."""
    found = _cache.get(organization_id)
    now = time.monotonic()
    if found is not None and now - found[0] < settings.revocation_cache_s:
        return found[1]
    pool = await get_pool(settings.postgres_dsn)
    async with pool.acquire() as conn:
        fresh = await fetch_revocations(conn, organization_id, datetime.now(UTC))
    _cache[organization_id] = (now, fresh)
    return fresh


async def is_revoked(principal: Principal) -> bool:
    """Whether ``principal``'s token is revoked (see the module docstring for the bound)."""
    found = await revocations(principal.organization_id)
    return found.revokes(principal.jti, principal.issued_at)
