"""Per-organisation shares of a worker's concurrency slots (reports, aggregations).

Pure asyncio, no I/O. A pool of ``total`` slots where one organisation holds at most
``per_org`` at once: with ``total`` = 2 and ``per_org`` = 1 a tenant that floods the pool
holds one slot and the other stays free for everyone else.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from stream_app.errors import WeddingError


def org_share(total: int, share: float) -> int:
    """Slots one organisation may hold: ``floor(total × share)``, at least 1, at most total."""
    return max(1, min(total, math.floor(total * share)))


class SlotsBusyError(WeddingError):
    """No slot within the wait; ``organization`` says whether the organisation's share was
    the limit (True) or the whole pool (False)."""

    def __init__(self, organization: bool) -> None:
        super().__init__("organisation share in use" if organization else "all slots in use")
        self.organization = organization


class TenantSlots:
    """``total`` slots, at most ``per_org`` of them held by one organisation.

    Args:
        total: slots of the pool (>= 1).
        per_org: most slots one organisation holds at once (1..total).
    """

    def __init__(self, total: int, per_org: int) -> None:
        if not 1 <= per_org <= total:
            raise ValueError(f"per_org: must be within 1..{total}, got {per_org}")
        self.total = total
        self.per_org = per_org
        self._pool = asyncio.Semaphore(total)
        self._orgs: dict[str, asyncio.Semaphore] = {}
        self.held: dict[str, int] = {}
        """organization_id → slots it holds now."""

    @asynccontextmanager
    async def slot(self, organization_id: str, wait_s: float) -> AsyncIterator[None]:
        """Hold one slot for ``organization_id`` for the block.

        The organisation's share is taken first, so a request waiting for its own
        organisation never holds a slot of the pool while it waits.

        Raises:
            SlotsBusyError: no slot (of the share, or of the pool) within ``wait_s`` seconds.
        """
        mine = self._orgs.setdefault(organization_id, asyncio.Semaphore(self.per_org))
        try:
            await asyncio.wait_for(mine.acquire(), wait_s)
        except TimeoutError:
            raise SlotsBusyError(organization=True) from None
        try:
            try:
                await asyncio.wait_for(self._pool.acquire(), wait_s)
            except TimeoutError:
                raise SlotsBusyError(organization=False) from None
            self.held[organization_id] = self.held.get(organization_id, 0) + 1
            try:
                yield
            finally:
                self.held[organization_id] -= 1
                self._pool.release()
        finally:
            mine.release()
