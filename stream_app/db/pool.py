"""asyncpg connection pools of a worker process, one per database login, created on first use.

A worker holds two logins (:mod:`stream_app.db.roles`): ``POSTGRES_DSN`` (the application
role, tenant work) and ``POSTGRES_SYSTEM_DSN`` (the system role, work that spans tenants). Each
pool checks once, when it is created, that its login cannot bypass row-level security.
"""

from __future__ import annotations

import asyncio

import asyncpg

from stream_app.db.roles import check_serving_role

CONNECT_TIMEOUT_S = 10.0
"""Longest wait for one new connection (asyncpg's default is 60 s): while PostgreSQL cannot
be reached a request fails within this bound (a ``TimeoutError`` the HTTP layer answers as
503 ``dependency_unavailable``) instead of hanging."""

LOCK_POOL_SIZE = 4
"""Connections of :func:`get_lock_pool`: how many organisations' GDPR requests one worker
runs at once (each holds a session advisory lock on one for its whole run)."""

_pools: dict[tuple[str, str], asyncpg.Pool] = {}
_lock = asyncio.Lock()


async def _open(
    dsn: str, variable: str, purpose: str = "work", min_size: int = 2, max_size: int = 10
) -> asyncpg.Pool:
    async with _lock:
        pool = _pools.get((dsn, purpose))
        if pool is None:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_S
            )
            try:
                async with pool.acquire() as conn:
                    await check_serving_role(conn, variable)
            except BaseException:
                await pool.close()
                raise
            _pools[(dsn, purpose)] = pool
        return pool


async def get_pool(dsn: str) -> asyncpg.Pool:
    """The process's pool for the application login ``dsn`` (2–10 connections).

    Raises:
        UnsafeDatabaseRoleError: the login is a superuser, has BYPASSRLS or owns a table.
    """
    return await _open(dsn, "POSTGRES_DSN")


async def get_lock_pool(dsn: str) -> asyncpg.Pool:
    """The process's pool of connections that hold session locks for the application login
    ``dsn`` (0 to :data:`LOCK_POOL_SIZE` connections), apart from :func:`get_pool`'s: a lock
    held for a long request (a GDPR erasure waits up to ``WEDDING_GDPR_ERASURE_WAIT_S`` for
    the live table) takes none of the connections every tenant's requests share. Before, ten
    organisations' erasures waiting on the live table held all ten (an attacker round's
    concern: any tenant's PostgreSQL reads then waited on them).

    Raises:
        UnsafeDatabaseRoleError: the login is a superuser, has BYPASSRLS or owns a table.
    """
    return await _open(dsn, "POSTGRES_DSN", "locks", min_size=0, max_size=LOCK_POOL_SIZE)


async def get_system_pool(dsn: str) -> asyncpg.Pool:
    """The process's pool for the cross-tenant system login ``dsn`` (2–10 connections).

    Raises:
        UnsafeDatabaseRoleError: the login is a superuser, has BYPASSRLS or owns a table.
    """
    return await _open(dsn, "POSTGRES_SYSTEM_DSN")
