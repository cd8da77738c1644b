"""The IANA zone of each organisation, for calendar windows computed in the agents.

Read from PostgreSQL (``organizations.time_zone``) and kept in memory for ``ttl_s`` seconds,
so a batch costs at most one query for the organisations it has not seen lately.

Policy when the zone cannot be read:

- an organisation that is not registered in PostgreSQL gets **UTC** (its events are still
  counted; the calendar windows of its events are UTC days, weeks and months until it is
  registered, and windows already written keep their labels);
- when PostgreSQL cannot be reached, a zone read before is used even if older than ``ttl_s``,
  and an organisation never read gets UTC for this batch only (it is not remembered, so the
  next batch asks again). A warning is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg

from stream_app.db.pool import get_system_pool

log = logging.getLogger(__name__)

UTC_ZONE = ZoneInfo("UTC")


class OrganizationZones:
    """Organisation id → :class:`~zoneinfo.ZoneInfo`, cached (see the module docstring).

    Call :meth:`load` (async) with the organisations of a batch, then :meth:`zone_of` (sync,
    for the pure folds) for any of them.
    """

    def __init__(self, dsn: str, ttl_s: float = 300.0) -> None:
        self._dsn = dsn
        self._ttl_s = ttl_s
        self._zones: dict[str, tuple[ZoneInfo, float]] = {}
        self._batch_fallback: set[str] = set()

    async def load(self, organization_ids: Iterable[str]) -> None:
        """Make sure every organisation of ``organization_ids`` has a current zone."""
        now = time.monotonic()
        wanted = sorted(
            {
                o
                for o in organization_ids
                if now - self._zones.get(o, (UTC_ZONE, -1e18))[1] > self._ttl_s
            }
        )
        self._batch_fallback.clear()
        if not wanted:
            return
        try:
            pool = await get_system_pool(self._dsn)
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT id, time_zone FROM organizations WHERE id = ANY($1::text[])", wanted
                )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("organisation zones unreadable (%s); using cached zones or UTC", exc)
            self._batch_fallback.update(o for o in wanted if o not in self._zones)
            return
        found = {r["id"]: r["time_zone"] for r in rows}
        for org in wanted:
            self._zones[org] = (_zone(found.get(org)), now)

    def zone_of(self, organization_id: str) -> ZoneInfo:
        """The zone of an organisation passed to the last :meth:`load` (UTC if unknown)."""
        if organization_id in self._batch_fallback:
            return UTC_ZONE
        found = self._zones.get(organization_id)
        return found[0] if found is not None else UTC_ZONE


def _zone(name: str | None) -> ZoneInfo:
    if name is None:
        return UTC_ZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("organisation time zone %r is not an IANA zone; using UTC", name)
        return UTC_ZONE
