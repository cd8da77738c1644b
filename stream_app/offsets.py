"""Offset commits of the input topics that survive faust's re-deliveries and skipped messages.

faust-streaming commits, per partition, the run of consecutive acknowledged offsets that starts
at the committed offset. After a crash and a rebalance (``tests/e2e/test_exactly_once.py``,
inspected with ``GET /debug/consumer``) two things break that:

- a message delivered to the stream twice around the seek that follows table recovery is
  acknowledged twice (``[2666, 2667, 2667, 2668, 2668, …]``): the run stops at the first
  repeat, so each commit advances by one or two offsets and the group never catches up;
- messages fetched before that seek move faust's read position past the committed offset, and
  the seek's messages below it are then dropped as already read: the partition is processed
  from 3228 while 3214–3227 were never delivered. faust never commits that partition again
  (correct: committing past them would lose them), and the group stalls.

A third: when the offset of a message it drains jumps past its read position, faust records
the offsets in between as a *gap* (meant for offsets without messages: transaction markers,
compacted records) and commits across it as if they had been acknowledged. Its read position
also jumps for the reason above, so the "gap" can hold real messages that were never
delivered: a SIGKILL test lost ~570 events per partition that way (committed, never folded;
the changelog showed input offsets 2776..3344 of one partition in no row). On the input topics
every offset holds a message (their producers do not use transactions), so
:func:`record_gap` records no gap there; the skipped offsets make a hole, and holes are
repaired as below.

This module keeps faust's rule but (1) drops repeated and already-committed offsets before it
runs, and (2) repairs a hole at the head: when a partition of an input topic has
acknowledged offsets above the committed one, none at it, and no recorded gap covering the
hole, for :data:`HOLE_REPAIR_AFTER_S` seconds, the partition is sought back to the committed
offset so the missing messages are delivered (and everything after them again). That is safe
because the folds are order-independent and idempotent per row (see
:func:`stream_app.tables.bookings.fold_batch` and :mod:`stream_app.tables.guarded`):
re-delivered events are recognised as duplicates.

Pinned to faust-streaming 0.15 (``Consumer._new_offset``, ``_add_gap``, ``_acked``,
``_acked_index``, ``_committed_offset``, ``_gap``, ``seek``), like :mod:`stream_app.agents.context`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka.errors import KafkaError
from faust.transport.consumer import Consumer
from faust.types import TP

from stream_app.observability import SKIPPED_OFFSETS
from stream_app.topics import INPUT_TOPICS

log = logging.getLogger(__name__)

IN_ORDER_TOPICS: frozenset[str] = frozenset(INPUT_TOPICS)
"""Input topics whose agents fold idempotently per row (re-delivery is harmless)."""

HOLE_REPAIR_AFTER_S = 10.0
"""Seconds a hole at the head of a partition's acknowledged offsets may last before repair."""

TAIL_PATIENCE = 3.0
"""How many times ``HOLE_REPAIR_AFTER_S`` a lagging tail whose read position sits at the
committed offset may stay without progress before it is sought back."""

_faust_new_offset = Consumer._new_offset
_faust_add_gap = Consumer._add_gap


def clean_acked(consumer: Any, tp: TP) -> None:
    """Remove repeated offsets and offsets below the committed one from ``tp``'s acks."""
    acked = consumer._acked[tp]
    if not acked:
        return
    committed: int | None = consumer._committed_offset[tp]
    unique = sorted({o for o in acked if committed is None or o >= committed})
    acked[:] = unique
    consumer._acked_index[tp] = set(unique)


def head_hole(consumer: Any, tp: TP) -> tuple[int, int] | None:
    """``(first missing, first acknowledged)`` when offsets at the head were never acknowledged.

    None when there is no hole: nothing acknowledged, nothing committed yet, the committed
    offset itself acknowledged, or every missing offset inside a gap faust recorded (offsets
    that hold no message, e.g. transaction markers).
    """
    acked = consumer._acked[tp]
    committed: int | None = consumer._committed_offset[tp]
    if not acked or committed is None:
        return None
    first: int = min(acked)
    if first <= committed:
        return None
    gap = consumer._gap.get(tp)
    if gap and all(gap.overlaps_point(o) for o in range(committed, min(first, committed + 1000))):
        return None
    return committed, first


def new_offset(consumer: Any, tp: TP) -> int | None:
    """faust's committable offset for ``tp``, after :func:`clean_acked` on input topics.

    A hole at the head (:func:`head_hole`) commits nothing, like faust.
    """
    if tp.topic in IN_ORDER_TOPICS:
        clean_acked(consumer, tp)
        if head_hole(consumer, tp) is not None:
            return None
    result: int | None = _faust_new_offset(consumer, tp)
    return result


class HoleRepair:
    """Seeks input partitions with a lasting head hole, or a stalled tail, back to their
    committed offset.

    Call :meth:`check` periodically (the worker does every 5 s); it returns the partitions it
    sought back.
    """

    def __init__(self, after_s: float = HOLE_REPAIR_AFTER_S) -> None:
        self.after_s = after_s
        self._since: dict[TP, tuple[tuple[int, int], float]] = {}
        self._tails: dict[TP, tuple[tuple[int, int], float]] = {}

    async def check(self, consumer: Any, now: float | None = None) -> list[TP]:
        """Repair the holes older than ``after_s`` of partitions still assigned; forget the
        ones that closed. A seek that fails (the partition was revoked meanwhile) is logged
        and skipped, never raised: the timer must not crash the worker."""
        now = time.monotonic() if now is None else now
        repaired: list[TP] = []
        seen: set[TP] = set()
        for tp in list(consumer._acked):
            if tp.topic not in IN_ORDER_TOPICS:
                continue
            clean_acked(consumer, tp)
            hole = head_hole(consumer, tp)
            if hole is None:
                continue
            seen.add(tp)
            if not self._lasted(self._since, tp, hole, now):
                continue
            _log_seek_back(tp, hole[0], hole[1] - 1)
            if tp not in consumer.assignment():
                continue  # revoked meanwhile: its new owner reads from the committed offset
            if await _seek_back(consumer, tp, hole[0]):
                repaired.append(tp)
        for tp in list(self._since):
            if tp not in seen:
                del self._since[tp]
        repaired.extend(await self._repair_stalled_tails(consumer, now))
        return repaired

    def _lasted(
        self,
        since: dict[TP, tuple[tuple[int, int], float]],
        tp: TP,
        state: tuple[int, int],
        now: float,
        patience: float = 1.0,
    ) -> bool:
        """Whether ``tp`` has been in ``state`` for ``patience × after_s`` seconds (then it is
        forgotten, so the next repair waits again); a new or changed state starts the clock."""
        first_seen = since.get(tp)
        if first_seen is None or first_seen[0] != state:
            since[tp] = (state, now)
            return False
        if now - first_seen[1] < self.after_s * patience:
            return False
        del since[tp]
        return True

    async def _repair_stalled_tails(self, consumer: Any, now: float) -> list[TP]:
        """Seek back assigned input partitions that lag (committed offset below the end) with
        nothing acknowledged and no progress (same committed and read offsets) for
        ``after_s`` seconds, or ``TAIL_PATIENCE × after_s`` when the read position is at the
        committed offset.

        Seen after a rebalance under load: another worker processed and committed offsets
        past this worker's last read position (``read < committed - 1``, which a single owner
        can never produce), the message at the committed offset was never delivered here
        again, and the group stayed one message behind for ever. Seen in a CI run: a
        partition 14 messages behind for 4 minutes after a rebalance, with no hole and no
        acknowledgement; whatever holds such a tail (its messages dropped around the
        rebalance, a fetch position that stopped), a seek to the committed offset delivers
        them again. A read position at the committed offset is also where a partition paused
        by flow control waits, so it gets more patience; a redelivery is harmless anyway (the
        folds are idempotent), it only costs time.
        """
        repaired: list[TP] = []
        stalled: set[TP] = set()
        for tp in consumer.assignment():
            if tp.topic not in IN_ORDER_TOPICS or consumer._acked.get(tp):
                continue
            committed: int | None = consumer._committed_offset.get(tp)
            try:
                end = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - no end known yet (or revoked meanwhile)
                continue
            read = consumer._read_offset.get(tp)
            if committed is None or end is None or committed >= end:
                continue
            patience = 1.0 if read is None or read < committed - 1 else TAIL_PATIENCE
            stalled.add(tp)
            state = (committed, -1 if read is None else read)
            if not self._lasted(self._tails, tp, state, now, patience):
                continue
            _log_seek_back(tp, committed, end - 1)
            if await _seek_back(consumer, tp, committed):
                repaired.append(tp)
        for tp in list(self._tails):
            if tp not in stalled:
                del self._tails[tp]
        return repaired


def _log_seek_back(tp: TP, first: int, last: int) -> None:
    log.warning(
        "%s/%d: offsets %d..%d were never delivered to the stream; seeking back to %d",
        tp.topic,
        tp.partition,
        first,
        last,
        first,
    )


async def _seek_back(consumer: Any, tp: TP, offset: int) -> bool:
    """Seek ``tp`` to ``offset``; False (logged, never raised) when the seek fails, e.g. the
    partition was revoked between the check and the seek."""
    try:
        await consumer.seek(tp, offset)
    except KafkaError as exc:
        log.warning("%s/%d: seek back failed (%s)", tp.topic, tp.partition, exc)
        return False
    return True


async def record_gap(consumer: Any, tp: TP, offset_from: int, offset_to: int) -> None:
    """faust's gap bookkeeping, except on the input topics, where skipped offsets are not a gap
    (see the module docstring): they stay unacknowledged, so nothing is committed past them
    until they are delivered (:class:`HoleRepair` seeks back to them)."""
    if tp.topic in IN_ORDER_TOPICS:
        log.warning(
            "%s/%d: faust skipped offsets %d..%d; nothing is committed past them until they"
            " are delivered",
            tp.topic,
            tp.partition,
            offset_from,
            offset_to - 1,
        )
        SKIPPED_OFFSETS.labels(tp.topic).inc(max(0, offset_to - offset_from))
        return
    await _faust_add_gap(consumer, tp, offset_from, offset_to)


def install() -> None:
    """Use :func:`new_offset` and :func:`record_gap` in every faust consumer of this process
    (idempotent)."""
    Consumer._new_offset = new_offset  # type: ignore[method-assign,assignment]
    Consumer._add_gap = record_gap  # type: ignore[method-assign,assignment]
