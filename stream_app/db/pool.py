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

_pools: dict[str, asyncpg.Pool] = {}
_lock = asyncio.Lock()


async def _open(dsn: str, variable: str) -> asyncpg.Pool:
    async with _lock:
        pool = _pools.get(dsn)
        if pool is None:
            pool = await asyncpg.create_pool(
                dsn, min_size=2, max_size=10, timeout=CONNECT_TIMEOUT_S
            )
            try:
                async with pool.acquire() as conn:
                    await check_serving_role(conn, variable)
            except BaseException:
                await pool.close()
                raise
            _pools[dsn] = pool
        return pool


async def get_pool(dsn: str) -> asyncpg.Pool:
    """The process's pool for the application login ``dsn`` (2–10 connections).

    Raises:
        UnsafeDatabaseRoleError: the login is a superuser, has BYPASSRLS or owns a table.
    """
    return await _open(dsn, "POSTGRES_DSN")


async def get_system_pool(dsn: str) -> asyncpg.Pool:
    """The process's pool for the cross-tenant system login ``dsn`` (2–10 connections).

    Raises:
        UnsafeDatabaseRoleError: the login is a superuser, has BYPASSRLS or owns a table.
    """
    return await _open(dsn, "POSTGRES_SYSTEM_DSN")
