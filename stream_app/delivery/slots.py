"""Delivery slots of one worker, shared fairly between organisations.

A worker makes at most ``total`` delivery attempts at once. No organisation ever holds more
than :attr:`DeliverySlots.cap`, ``max(1, total // 2)``, even alone: a tenant whose receivers
are slow (a webhook may take its whole ``timeout_s``) cannot take the slots another tenant's
next delivery needs, so with two slots or more another tenant always finds one free. While
``n`` organisations hold a slot or have deliveries waiting (the caller tells
:meth:`DeliverySlots.allowance` which are waiting), each is further held to
``max(1, total // n)``. Slots are held for one attempt only; a retry waits in the queue, not
in a slot. ``api`` deliveries (no network) take no slot at all
(:class:`~stream_app.delivery.worker.DeliveryWorker`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


class DeliverySlots:
    """Counts the attempts in flight per organisation (one event loop; no locking needed).

    Attributes:
        total: attempts at once on this worker (≥ 1).
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("total: at least one delivery slot is needed")
        self.total = total
        self._held: Counter[str] = Counter()

    @property
    def cap(self) -> int:
        """The most slots one organisation may ever hold: ``max(1, total // 2)``."""
        return max(1, self.total // 2)

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return sum(self._held.values())

    def held(self, organization_id: str) -> int:
        """Slots ``organization_id`` holds now."""
        return self._held[organization_id]

    def share(self, waiting: Iterable[str]) -> int:
        """The most slots one organisation may hold while ``waiting`` ones have work due
        (never more than :attr:`cap`)."""
        active = {org for org, n in self._held.items() if n > 0} | set(waiting)
        return min(self.cap, max(1, self.total // max(1, len(active))))

    def allowance(self, organization_id: str, waiting: Iterable[str]) -> int:
        """How many more slots ``organization_id`` may take now (0 when none)."""
        free = self.total - self.in_use
        fair = self.share(waiting) - self._held[organization_id]
        return max(0, min(free, fair))

    def take(self, organization_id: str, n: int = 1) -> None:
        """Hold ``n`` more slots for ``organization_id`` (after :meth:`allowance` said so)."""
        self._held[organization_id] += n

    def release(self, organization_id: str) -> None:
        """Give back one slot of ``organization_id``."""
        self._held[organization_id] -= 1
        if self._held[organization_id] <= 0:
            del self._held[organization_id]
