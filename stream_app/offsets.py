"""Committable offsets for agents that process each partition in order.

faust-streaming decides what to commit from the offsets its streams acknowledged: it sorts
them, takes the first run of consecutive numbers from the committed offset, and removes that
run from its list *before* the commit is sent. Two things break that after a crash and a
rebalance (reproduced by ``tests/e2e/test_exactly_once.py`` about one run in four, and
inspected with ``GET /debug/consumer``):

- a message delivered to the stream twice around the seek that follows table recovery is
  acknowledged twice (``[2666, 2667, 2667, 2668, 2668, …]``): the run stops at the first
  repeat, so each commit advances by one or two offsets and the group falls behind for good;
- a run removed from the list for a commit that then does not happen (the partitions were
  revoked meanwhile) is lost, leaving a hole at the head (committed 3214, first acknowledged
  3228): faust never commits that partition again.

The agents on :data:`IN_ORDER_TOPICS` process every partition strictly in offset order (one
actor, ``take_events`` batches folded before the next batch is taken), so the highest
acknowledged offset + 1 is committable: every offset below it was processed. For those topics
this module replaces faust's choice with exactly that; every other topic (e.g. the delivery
agent, whose actors run concurrently) keeps faust's behaviour. Redelivered events stay
harmless: the folds are idempotent (see :mod:`stream_app.tables.bookings`).

Pinned to faust-streaming 0.15 (``Consumer._new_offset``, ``_acked``, ``_acked_index``,
``_committed_offset``), like :mod:`stream_app.agents.context`.
"""

from __future__ import annotations

from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP

from stream_app.topics import INPUT_TOPICS

IN_ORDER_TOPICS: frozenset[str] = frozenset(INPUT_TOPICS)
"""Topics whose single agent processes each partition in offset order."""

_faust_new_offset = Consumer._new_offset


def new_offset_in_order(consumer: Any, tp: TP) -> int | None:
    """The offset to commit for ``tp``: highest acknowledged + 1, or None when nothing new.

    For topics outside :data:`IN_ORDER_TOPICS` this is faust's own rule.
    """
    if tp.topic not in IN_ORDER_TOPICS:
        result: int | None = _faust_new_offset(consumer, tp)
        return result
    acked = consumer._acked[tp]
    if not acked:
        return None
    top: int = max(acked)
    acked.clear()
    consumer._acked_index[tp].clear()
    committed: int | None = consumer._committed_offset[tp]
    if committed is not None and top + 1 <= committed:
        return None
    return top + 1


def install() -> None:
    """Use :func:`new_offset_in_order` in every faust consumer of this process (idempotent)."""
    Consumer._new_offset = new_offset_in_order  # type: ignore[method-assign,assignment]
