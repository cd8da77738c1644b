"""Open event-time windows of one partition, by the instant their watermark closes them.

A window closes when its organisation's watermark reaches ``window end + grace``
(:func:`stream_app.tables.windows.is_closed`); its value is then final. :class:`OpenWindows`
holds, per organisation, the keys of the window rows not yet final, ordered by that instant,
so a watermark that moves names the rows it closes in O(closed × log open). It is rebuilt from
the table (:meth:`OpenWindows.rebuild`) when a worker takes a partition.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from stream_app.tables.windows import WINDOW_GRAINS, window_end


class OpenWindows:
    """Open window rows of one partition (see the module docstring)."""

    def __init__(self) -> None:
        self._heaps: dict[str, list[tuple[datetime, str]]] = {}
        self._keys: set[str] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, organization_id: str, key: str, closes_at: datetime) -> None:
        """Track the row ``key`` until a watermark reaches ``closes_at`` (UTC-aware)."""
        if key in self._keys:
            return
        self._keys.add(key)
        heapq.heappush(self._heaps.setdefault(organization_id, []), (closes_at, key))

    def closing(self, organization_id: str, watermark: datetime) -> list[str]:
        """The keys closed by ``watermark`` (``closes_at <= watermark``), removed; each key is
        returned once."""
        heap = self._heaps.get(organization_id)
        out: list[str] = []
        while heap and heap[0][0] <= watermark:
            _, key = heapq.heappop(heap)
            self._keys.discard(key)
            out.append(key)
        return out

    @classmethod
    def rebuild(
        cls,
        rows: Iterable[tuple[str, Any]],
        zone_of: Callable[[str], ZoneInfo],
        grace: timedelta,
    ) -> OpenWindows:
        """The open windows among ``rows`` (``(key, value)`` of a partition): window rows
        (``org/venue/<window grain>/label``) without ``"final": true``."""
        out = cls()
        for key, value in rows:
            if key.startswith("~") or not isinstance(value, dict) or value.get("final"):
                continue
            parts = key.split("/")
            if len(parts) != 4 or parts[2] not in WINDOW_GRAINS:
                continue
            org, _, grain, label = parts
            end = window_end(grain, label, zone_of(org))
            out.add(org, key, end + grace)
        return out

    def organizations(self) -> set[str]:
        """Organisations with an open window."""
        return {org for org, heap in self._heaps.items() if heap}
