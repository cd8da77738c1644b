"""One asyncpg connection pool per worker process, created on first use."""

from __future__ import annotations

import asyncio

import asyncpg

_pool: asyncpg.Pool | None = None
_lock = asyncio.Lock()


async def get_pool(dsn: str) -> asyncpg.Pool:
    """The process's pool for ``dsn`` (2–10 connections), created on the first call."""
    global _pool
    async with _lock:
        if _pool is None:
            _pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        return _pool
