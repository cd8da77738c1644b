"""Batch delivery inside faust: a partition's fetched records reach the agent as one item.

faust-streaming 0.15 hands every Kafka message to its Conductor through
``Service.wait_first(callback(message), suspend_flow.wait())`` (``Consumer._drain_messages``):
four asyncio tasks created and three cancelled per message, 42–96 µs, which caps a worker at
roughly 10,000–24,000 messages/s whatever its agents do (``research/stream-core.md`` §2).

:class:`BatchConsumer` keeps faust's consumer (group membership, rebalancing, generation ids,
flow control, commits, table recovery) and replaces only the drain loop. For a topic in
:attr:`BatchConsumer.batch_topics` it wraps everything one fetch returned for a partition in
one :class:`BatchMessage` and hands that to the Conductor once: the agent's stream yields one
event per fetched batch, with no per-message wait, no per-message ``Event`` and no
``within`` timer (a batch is whatever the fetch returned *now*, so a quiet topic adds no
latency). Other topics (report requests, schedules) keep faust's per-message path.

Acknowledgement: acking a :class:`BatchMessage` acknowledges every offset from its first
record to its last (:meth:`BatchConsumer.ack`), kept as merged ranges per partition instead
of faust's list of single offsets, and :meth:`BatchConsumer._new_offset` commits the end of
the range that starts at the committed offset. A range that starts *above* the committed
offset (a hole: offsets never delivered, e.g. a fetch from before a seek that arrived after
it) commits nothing until the hole is filled; :meth:`BatchConsumer.repair_holes` seeks such a
partition back to its committed offset once the hole has lasted ``after_s`` seconds (the
folds are idempotent per row, so a redelivery only costs time).

A partition whose acknowledged range reaches its high watermark (the backlog is worked off)
is committed at once (:meth:`BatchConsumer._commit_soon`, at most every
:data:`CAUGHT_UP_COMMIT_SPACING_S`), not at faust's next commit interval (2.8 s): after a
burst the committed offsets show it done without waiting, and a worker killed then reads
less again.

Nothing is dropped: faust's drain drops a message whose offset is below its read position,
which after a seek back left offsets that were never delivered (see
:mod:`stream_app.runtime.offsets`); here every fetched record is delivered, and the per-row
offsets of the folds make a redelivery harmless.

Registered as the ``weddingkafka`` transport (``faust.transports`` entry point in
pyproject.toml) and selected by ``broker_consumer="weddingkafka://host:port"``.

Pinned to faust-streaming 0.15 (``Consumer._drain_messages``, ``_wait_next_records``,
``_acked``, ``_committed_offset``, ``_read_offset``, ``_n_acked``, ``_commit_every``,
``_buffered_partitions``, ``_unacked_messages``, ``_waiting_for_ack``) and aiokafka 0.14
(``ConsumerRecord``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage, ack_lock
from mode.utils.futures import notify

from stream_app.runtime.inloop import InLoopConsumerThread
from stream_app.topics import INPUT_TOPICS

log = logging.getLogger(__name__)

CAUGHT_UP_COMMIT_SPACING_S = 0.5
"""The least time between two commits started by a partition reaching its high watermark
(:meth:`BatchConsumer._commit_soon`): a partition that keeps up with its input reaches it
after every fetch."""


class BatchMessage(ConsumerMessage):
    """Every record one fetch returned for one partition, as one faust message.

    ``offset`` is the last record's offset (what faust's monitors and lag use) and ``value``
    is empty; the records are in :attr:`records` (aiokafka ``ConsumerRecord``: ``offset``,
    ``timestamp`` in ms, ``key``, ``value``, ``headers``), in offset order.
    """

    __slots__ = ("first_offset", "records")

    records: Sequence[Any]
    first_offset: int

    @classmethod
    def of(cls, tp: TP, records: Sequence[Any], generation_id: int) -> BatchMessage:
        """Wrap ``records`` (non-empty, one partition, ascending offsets)."""
        last = records[-1]
        ts = last.timestamp
        message = cls(
            tp.topic,
            tp.partition,
            last.offset,
            ts / 1000.0 if ts is not None else time.time(),
            last.timestamp_type,
            [],
            None,
            b"",
            None,
            0,
            0,
            tp,
            generation_id=generation_id,
        )
        message.records = records
        message.first_offset = records[0].offset
        return message


def _merge(ranges: list[list[int]], lo: int, hi: int) -> None:
    """Add ``[lo, hi]`` to sorted, disjoint, non-adjacent ``ranges`` (in place)."""
    i = len(ranges)
    while i > 0 and ranges[i - 1][0] > lo:
        i -= 1
    ranges.insert(i, [lo, hi])
    # merge with the left neighbour, then swallow right neighbours
    if i > 0 and ranges[i - 1][1] + 1 >= lo:
        ranges[i - 1][1] = max(ranges[i - 1][1], hi)
        del ranges[i]
        i -= 1
    while i + 1 < len(ranges) and ranges[i][1] + 1 >= ranges[i + 1][0]:
        ranges[i][1] = max(ranges[i][1], ranges[i + 1][1])
        del ranges[i + 1]


class BatchConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer with batch delivery for :attr:`batch_topics` (see module)."""

    batch_topics: ClassVar[frozenset[str]] = frozenset(INPUT_TOPICS)
    """Topics delivered as :class:`BatchMessage`: the four input topics (their agents run
    :class:`stream_app.agents.batch.BatchStream`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acked_ranges: dict[TP, list[list[int]]] = {}
        self._holes_since: dict[TP, tuple[int, int, float]] = {}
        self._tails_since: dict[TP, tuple[int, int, int, float]] = {}
        self._generation_start: dict[TP, tuple[int, int]] = {}
        self._caught_up_commit: asyncio.Task[None] | None = None
        self._commit_again = False
        self._last_caught_up_commit = 0.0

    def _new_consumer_thread(self) -> InLoopConsumerThread:
        """faust's aiokafka consumer thread, run on this loop (:mod:`stream_app.runtime.inloop`)."""
        return InLoopConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # --- acknowledgements -------------------------------------------------------------
    def ack(self, message: Any) -> bool:
        """Acknowledge ``message``; a :class:`BatchMessage` acknowledges its whole range."""
        if not isinstance(message, BatchMessage):
            return bool(super().ack(message))
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            self._unacked_messages.discard(message)
            tp = message.tp
            if message.generation_id != self.app.consumer_generation_id:
                # a batch of an earlier generation, finished after a rebalance: its partition
                # was revoked meanwhile (and perhaps given back), the committed offset it was
                # read after is gone from faust's bookkeeping, and the new generation reads
                # again from the committed offset. Recording it could let a commit jump the
                # offsets before it that nobody acknowledged in this generation.
                notify(self._waiting_for_ack)
                return False
            try:
                committed = self._committed(tp)
                lo, hi = message.first_offset, message.offset
                if committed is not None:
                    lo = max(lo, committed)
                if lo <= hi:
                    _merge(self._acked_ranges.setdefault(tp, []), lo, hi)
                    _ = self._acked[tp]  # lists the partition for faust's commit
                    self._n_acked += hi - lo + 1
                    highwater = self.highwater(tp)
                    if highwater is not None and hi + 1 >= highwater:
                        self._commit_soon()
                    return True
                return False
            finally:
                notify(self._waiting_for_ack)

    def _commit_soon(self) -> None:
        """Commit now (in a task of its own, one at a time; acknowledgements arriving while
        it runs are committed by one more round)."""
        self._commit_again = True
        if self._caught_up_commit is not None and not self._caught_up_commit.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # acknowledged outside the worker's loop: the interval commits
            return
        self._caught_up_commit = loop.create_task(self._commit_caught_up())

    async def _commit_caught_up(self) -> None:
        """Commit until no acknowledgement reached a high watermark since the last round
        (faust's ``commit`` does nothing while another commit runs, so wait for that first)."""
        try:
            while self._commit_again and not self.should_stop:
                wait = self._last_caught_up_commit + CAUGHT_UP_COMMIT_SPACING_S - time.monotonic()
                if wait > 0:  # a partition that keeps up would commit after every fetch
                    await asyncio.sleep(wait)
                self._commit_again = False
                self._last_caught_up_commit = time.monotonic()
                await self.maybe_wait_for_commit_to_finish()
                await self.commit()
        except Exception as exc:  # noqa: BLE001 - the interval commit tries again
            log.warning("commit after catching up failed: %r", exc)

    def committed_offset(self, tp: TP) -> int | None:
        """The offset the current generation of a batch partition starts from (the committed
        offset, see :meth:`_committed`); None when it is not known."""
        return self._committed(tp)

    def _committed(self, tp: TP) -> int | None:
        """The committed offset of a batch partition as faust knows it; when faust has none
        (it keeps a committed 0 as None, and forgets a partition's offset when it is revoked
        until it seeks again), the first offset delivered to the stream in the current
        generation: after an assignment aiokafka fetches from the committed offset. None when
        neither is known (nothing is then committed for the partition).

        A commit computed with no committed offset at all took the end of the first
        acknowledged range, wherever it started: after a worker paused past its session
        timeout rejoined, a batch acknowledged in the new generation could commit past
        offsets nobody had folded (the soak's events missing after the pause).
        """
        committed = self._committed_offset.get(tp)
        if committed is not None:
            return int(committed)
        start = self._generation_start.get(tp)
        if start is not None and start[0] == self.app.consumer_generation_id:
            return start[1]
        return None

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic not in self.batch_topics:
            result: int | None = super()._new_offset(tp)
            return result
        ranges = self._acked_ranges.get(tp)
        if not ranges:
            return None
        committed = self._committed(tp)
        if committed is None:
            return None  # where this generation started is not known: commit nothing blind
        while ranges and ranges[0][1] < committed:
            ranges.pop(0)
        if not ranges or ranges[0][0] > committed:
            return None  # a hole at the head: nothing is committed past it
        return ranges[0][1] + 1

    def head_hole(self, tp: TP) -> tuple[int, int] | None:
        """``(committed offset, first acknowledged offset above it)`` when a batch
        partition's acknowledgements start above its committed offset; None otherwise."""
        ranges = self._acked_ranges.get(tp)
        committed = self._committed(tp)
        if not ranges or committed is None:
            return None
        first = next((r[0] for r in ranges if r[1] >= committed), None)
        if first is None or first <= committed:
            return None
        return committed, first

    async def repair_holes(self, after_s: float, now: float | None = None) -> list[TP]:
        """Seek back to its committed offset each assigned batch partition whose head hole
        has lasted ``after_s`` seconds, or whose tail made no progress
        (:meth:`_repair_stalled_tails`); the partitions sought back."""
        now = time.monotonic() if now is None else now
        repaired: list[TP] = []
        seen: set[TP] = set()
        for tp in list(self._acked_ranges):
            hole = self.head_hole(tp)
            if hole is None:
                continue
            seen.add(tp)
            since = self._holes_since.get(tp)
            if since is None or since[:2] != hole:
                self._holes_since[tp] = (*hole, now)
                continue
            if now - since[2] < after_s or tp not in self.assignment():
                continue
            log.warning(
                "%s/%d: offsets %d..%d were never delivered; seeking back to %d",
                tp.topic,
                tp.partition,
                hole[0],
                hole[1] - 1,
                hole[0],
            )
            del self._holes_since[tp]
            await self.seek(tp, hole[0])
            repaired.append(tp)
        for tp in list(self._holes_since):
            if tp not in seen:
                del self._holes_since[tp]
        return repaired + await self._repair_stalled_tails(after_s, now)

    async def _repair_stalled_tails(self, after_s: float, now: float) -> list[TP]:
        """Seek back assigned batch partitions that lag (committed offset below the end)
        with nothing acknowledged and no progress (same committed offset and read position)
        for ``after_s`` seconds (three times that when the read position is at the committed
        offset, where a partition paused by flow control also waits).

        Seen after a crash and a restart in the crash tests (and, before batch delivery,
        after rebalances in CI): the consumer sought the partition to its committed offset
        after recovering its tables and then fetched nothing more for it, for minutes; a
        seek to the committed offset starts its fetches again. A redelivery is harmless (the
        folds skip what their rows hold), it only costs time.
        """
        repaired: list[TP] = []
        stalled: set[TP] = set()
        for tp in self.assignment():
            if tp.topic not in self.batch_topics or self._acked_ranges.get(tp):
                continue
            # faust keeps a committed offset of 0 as None (and then reads from the start)
            committed = self._committed_offset.get(tp) or 0
            try:
                end = self.highwater(tp)
            except Exception:  # noqa: BLE001 - no end known yet, or revoked meanwhile
                continue
            if end is None or committed >= end:
                continue
            buffered, position = self._fetch_state(tp)
            if buffered:
                continue  # waiting its turn behind other partitions' batches, not stalled
            read = self._read_offset.get(tp)
            state = (committed, -1 if read is None else read, position)
            stalled.add(tp)
            since = self._tails_since.get(tp)
            if since is None or since[:3] != state:
                self._tails_since[tp] = (*state, now)
                continue
            patience = 3.0 if read is not None and read >= committed else 1.0
            if now - since[3] < after_s * patience:
                continue
            del self._tails_since[tp]
            log.warning(
                "%s/%d: no progress from committed offset %d to the end %d; seeking back",
                tp.topic,
                tp.partition,
                committed,
                end,
            )
            await self.seek(tp, committed)
            repaired.append(tp)
        for tp in list(self._tails_since):
            if tp not in stalled:
                del self._tails_since[tp]
        return repaired

    def _fetch_state(self, tp: TP) -> tuple[bool, int]:
        """``(records of tp fetched and not yet returned, aiokafka's position of tp)``; the
        position is the next offset aiokafka returns (-1 when it has none).

        Pinned to aiokafka 0.14 (``AIOKafkaConsumer._fetcher``, ``Fetcher._records``,
        ``AIOKafkaConsumer._subscription``; read from faust's consumer thread's objects:
        a dict membership test and an int). Seen on a starved machine (load average 14 on
        2 cores): a partition whose fetched batch waited more than 30 s behind the other
        partitions' batches was sought back, again and again, and its batch fetched and
        dropped each time; a partition whose records are buffered, or whose position moves,
        is waiting its turn, not stalled.
        """
        try:
            consumer = self._thread._ensure_consumer()
            fetcher = consumer._fetcher
            buffered = fetcher is not None and tp in fetcher._records
            state = consumer._subscription.subscription.assignment.state_value(tp)
            position = state.position if state is not None and state.has_valid_position else -1
            return buffered, int(position)
        except Exception:  # noqa: BLE001 - a consumer not started or stopping: no verdict
            return False, -1

    def acked_ranges(self, tp: TP) -> list[tuple[int, int]]:
        """The acknowledged, not yet committed offset ranges of a batch partition."""
        return [(lo, hi) for lo, hi in self._acked_ranges.get(tp, [])]

    def on_buffer_full(self, tp: TP) -> None:
        """Keep a batch partition fetchable while its channel is under pressure.

        faust takes a partition out of the fetch set once its channel queue is under
        pressure (with the input channels' ``maxsize`` of 2, as soon as one batch waits) and
        puts it back when the queue is empty. Records fetched for it meanwhile sit in
        aiokafka's buffer, and aiokafka sends no fetch to that broker while any partition's
        records sit there (``prefetch_backoff``, 100 ms), nor wakes a waiting ``getmany``
        when the partition is back: the next batch of every partition waited up to 100 ms,
        and up to the drain loop's 1 s poll when all four were out (p90 106 ms and p99
        1,018 ms from produce to fetch at 1,000 events/s). A batch partition stays in the
        fetch set instead; the channel's back-pressure is the drain loop waiting to put the
        batch (aiokafka buffers at most one fetch per partition meanwhile).
        """
        if tp.topic not in self.batch_topics:
            super().on_buffer_full(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._acked_ranges.pop(tp, None)
            self._holes_since.pop(tp, None)
            self._generation_start.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        for tp in assigned:
            self._acked_ranges.pop(tp, None)
        await super().on_partitions_assigned(assigned, generation_id)

    # --- the drain loop ---------------------------------------------------------------
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the loop
        """faust's drain loop (``Consumer._drain_messages``) with batch delivery."""
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        batch_topics = self.batch_topics
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:
                    try:
                        await self.perform_seek()
                    except Exception as exc:  # noqa: BLE001 - faust logs and goes on too
                        log.warning("exception performing seek when flow not active %r", exc)
                    continue
                generation_id = self.app.consumer_generation_id
                for tp, tp_records in records.items():
                    if not tp_records or not self.flow_active:
                        continue
                    if self.app.consumer_generation_id != generation_id:
                        break
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    if tp.topic in batch_topics:
                        await self._deliver_batch(callback, tp, tp_records, generation_id)
                    else:
                        await self._deliver_each(callback, tp, tp_records)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _maybe_commit(self) -> None:
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _deliver_batch(
        self, callback: Any, tp: TP, records: Sequence[Any], generation_id: int
    ) -> None:
        await self._maybe_commit()
        message = BatchMessage.of(tp, records, generation_id)
        start = self._generation_start.get(tp)
        if start is None or start[0] != generation_id:
            self._generation_start[tp] = (generation_id, message.first_offset)
        await self.wait_first(callback(message), self.suspend_flow.wait())
        self._read_offset[tp] = message.offset

    async def _deliver_each(self, callback: Any, tp: TP, records: Sequence[Any]) -> None:
        """faust's per-message path (gap tracking, read position, ``wait_first``)."""
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for n, record in enumerate(records):
            if n and n % 100 == 0:
                await asyncio.sleep(0)
            offset = record.offset
            r_offset = self._read_offset[tp]
            if r_offset is not None and offset < r_offset:
                continue
            if r_offset and offset - r_offset > 1 and acks_enabled:
                await self._add_gap(tp, r_offset + 1, offset)
            await self._maybe_commit()
            await self.wait_first(callback(self._to_message(tp, record)), self.suspend_flow.wait())
            self._read_offset[tp] = offset


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with :class:`BatchConsumer` (scheme ``weddingkafka``)."""

    Consumer = BatchConsumer
