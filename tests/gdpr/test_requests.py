"""One GDPR request at a time per organisation (:func:`stream_app.gdpr.requests.exclusive`),
on real PostgreSQL: the lock is per organisation, a request waiting for it holds no
connection, and the lock connections come from a pool of their own, so organisations' long
requests cannot take the connections every tenant's requests share."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from stream_app.gdpr import requests as gdpr_requests


async def test_the_lock_is_per_organisation_and_a_waiter_gives_up_busy(
    pg_dsn: str, new_org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gdpr_requests, "LOCK_WAIT_S", 0.6)
    org_a, org_b = await new_org(), await new_org()
    async with asyncpg.create_pool(pg_dsn, min_size=0, max_size=3) as locks:
        async with gdpr_requests.exclusive(locks, org_a):
            # another organisation is not held up
            async with gdpr_requests.exclusive(locks, org_b):
                pass
            started = asyncio.get_running_loop().time()
            with pytest.raises(gdpr_requests.GdprBusyError) as busy:
                async with gdpr_requests.exclusive(locks, org_a):
                    raise AssertionError("the same organisation's second request ran")
            waited = asyncio.get_running_loop().time() - started
            assert 0.6 <= waited < 3.0
            assert f"another GDPR request of {org_a!r}" in str(busy.value)
        # released: the next request of the organisation runs
        async with gdpr_requests.exclusive(locks, org_a):
            pass


async def test_a_full_lock_pool_makes_the_next_organisation_busy_not_the_shared_pool(
    pg_dsn: str, pg_pool: asyncpg.Pool, new_org: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two organisations hold a lock pool of two: a third waits for a lock connection within
    its deadline and gives up busy; meanwhile the pool the tenants' reads share is free."""
    monkeypatch.setattr(gdpr_requests, "LOCK_WAIT_S", 0.6)
    orgs = [await new_org() for _ in range(3)]
    async with asyncpg.create_pool(pg_dsn, min_size=0, max_size=2) as locks:
        async with (
            gdpr_requests.exclusive(locks, orgs[0]),
            gdpr_requests.exclusive(locks, orgs[1]),
        ):
            with pytest.raises(gdpr_requests.GdprBusyError) as busy:
                async with gdpr_requests.exclusive(locks, orgs[2]):
                    raise AssertionError("a third organisation ran with the lock pool full")
            assert str(busy.value) == (
                "2 organisations' GDPR requests have run on this worker for over 1 s; retry later"
            )
            async with pg_pool.acquire(timeout=1) as conn:
                assert await conn.fetchval("SELECT 1") == 1
        async with gdpr_requests.exclusive(locks, orgs[2]):
            pass
