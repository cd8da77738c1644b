"""Hold a fold batch while faust moves partitions or restores tables; drop what moved away.

faust restores a table partition by writing its changelog records into RocksDB; a fold that
wrote the same rows meanwhile could be overwritten by an older record, and a row written for a
partition that has just moved to another worker is not seen by that worker. So before a
batch is folded, :func:`settle` waits while the app is rebalancing or recovering (the batch's
events are not acknowledged yet, so nothing is committed meanwhile), then keeps only the
events whose partition this worker still holds; the others will be read again by their new
owner from the committed offset (their acknowledgements here are for revoked partitions, which
faust never commits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from faust.types import EventT

from stream_app.app import app, settings

POLL_S = 0.05


def _busy() -> bool:
    if settings.stream_wait_empty:
        # faust waits for this batch before it revokes partitions: waiting for the
        # rebalance here would wait for ever; only a table restore is waited for
        return bool(getattr(app, "in_recovery", False))
    return bool(getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False))


async def settle(batch: Sequence[EventT[Any]]) -> list[EventT[Any]]:
    """Wait until no rebalance or recovery is under way; the events still assigned here."""
    while _busy():  # noqa: ASYNC110 - faust exposes these as plain flags, not events
        await asyncio.sleep(POLL_S)
    assigned = app.consumer.assignment()
    return [e for e in batch if e.message.tp in assigned]
