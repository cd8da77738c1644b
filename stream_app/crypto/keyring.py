"""A worker's cache of unwrapped data keys, so a download or a render unwraps once, not per
segment or per file.

Versions are immutable, so an unwrapped version is cached until evicted (LRU,
:data:`CACHE_SIZE` keys). Which version is the newest changes on ``keys rotate``, so that
answer is cached for :data:`CURRENT_TTL_S` seconds: a rotation reaches every worker's new
files within that time, and old files keep decrypting because their version is in their
header. Keys live only in this process's memory.
"""

from __future__ import annotations

import asyncio

import asyncpg
from cachetools import LRUCache, TTLCache

from stream_app.crypto.keys import (
    DataKey,
    MasterKeys,
    current_data_key,
    fetch_data_key,
    load_master_keys,
)
from stream_app.db.pool import get_pool
from stream_app.settings import load_settings

CACHE_SIZE = 4096
"""Unwrapped data keys kept per worker (32 bytes each)."""

CURRENT_TTL_S = 30.0
"""Default seconds a worker keeps using an organisation's newest version before asking again
(``WEDDING_DATA_KEY_TTL_S``, :attr:`stream_app.settings.Settings.data_key_ttl_s`)."""


class KeyRing:
    """Data keys of every organisation, unwrapped on first use and cached.

    Args:
        pool: PostgreSQL pool (key rows are read in tenant scope).
        masters: the master keys (default: :func:`load_master_keys` from the environment).
        current_ttl_s: seconds the newest version of an organisation is trusted.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        masters: MasterKeys | None = None,
        current_ttl_s: float = CURRENT_TTL_S,
    ) -> None:
        self.pool = pool
        self.masters = masters if masters is not None else load_master_keys()
        self._keys: LRUCache[tuple[str, int], DataKey] = LRUCache(CACHE_SIZE)
        self._current: TTLCache[str, DataKey] = TTLCache(CACHE_SIZE, current_ttl_s)
        self.unwraps = 0
        """Keys unwrapped so far (cache misses), for tests and metrics."""

    async def current(self, organization_id: str) -> DataKey:
        """The key that seals ``organization_id``'s new files (created on first use).

        Raises:
            MasterKeyError: it cannot be unwrapped with the master keys held.
        """
        key = self._current.get(organization_id)
        if key is None:
            async with self.pool.acquire() as conn:
                key = await current_data_key(conn, self.masters, organization_id)
            self.unwraps += 1
            self._current[organization_id] = key
            self._keys[(organization_id, key.version)] = key
        return key

    async def get(self, organization_id: str, version: int) -> DataKey:
        """Version ``version`` of ``organization_id``'s key.

        Raises:
            DataKeyNotFoundError: no such version.
            MasterKeyError: it cannot be unwrapped with the master keys held.
        """
        key = self._keys.get((organization_id, version))
        if key is None:
            async with self.pool.acquire() as conn:
                key = await fetch_data_key(conn, self.masters, organization_id, version)
            self.unwraps += 1
            self._keys[(organization_id, version)] = key
        return key

    def forget(self) -> None:
        """Drop every cached key (after a rotation in this process)."""
        self._keys.clear()
        self._current.clear()


_rings: dict[str, KeyRing] = {}
_lock = asyncio.Lock()


async def get_keyring(dsn: str) -> KeyRing:
    """The process's key ring for the database ``dsn``, created on first use.

    Raises:
        MasterKeyError: the master key is missing or malformed (see
            :func:`~stream_app.crypto.keys.load_master_keys`).
    """
    async with _lock:
        ring = _rings.get(dsn)
        if ring is None:
            ttl = load_settings().data_key_ttl_s
            ring = _rings[dsn] = KeyRing(await get_pool(dsn), current_ttl_s=ttl)
        return ring
