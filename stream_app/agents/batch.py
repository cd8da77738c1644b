"""The batch loop shared by the four fold agents (bookings, payments, interactions, suppliers).

Each agent's stream yields one :class:`stream_app.runtime.consumer.BatchMessage` per fetched
batch of one partition (the records one fetch returned, no per-message wait). Per batch:

1. **decode** every record (msgspec; a bad one, or one whose key is not
   ``organization_id/<entity>`` of its event, is copied to the dead-letter topic with the
   field and the reason; nothing stops the agent);
2. **settle**: wait while faust rebalances or restores tables, and drop the batch if its
   partition is no longer this worker's (its new owner reads it again from the committed
   offset);
3. **screen re-sends** through the dedupe records (:mod:`stream_app.tables.dedupe`);
4. **fold** in memory, one read, one change and one write per distinct row
   (the stream's pure fold, e.g. :func:`stream_app.tables.bookings.fold_batch`); when the
   fold raises, the events it fails on are found with the stream's probe
   (:mod:`stream_app.agents.poison`), copied to the dead-letter topic with the error, and
   the rest folded (a poison event costs its own count, not its partition's);
5. **write behind**: send the changed rows to the changelog and, right behind them on the
   same producer, the changes on ``realtime-metrics-updates`` (absolute values,
   at-least-once: they share the changelog's produce requests, so an update is out one
   broker round trip after its fold, as Kafka Streams' at-least-once sends its results before
   the changelog is acknowledged); await the changelog's acknowledgements, together with
   whatever must be durable before the input is acknowledged (dead-letter and late-event
   copies, final window values), then write the rows and the changelog offset to RocksDB in
   one write batch (:class:`stream_app.runtime.state.WriteBehindTable`);
6. **announce** durability: mark the changed organisations' cached reports stale (reports
   read RocksDB), while the next batch is decoded and folded;
7. acknowledge the batch's offsets (in order, after its announcement); faust commits them
   (after flushing its producer, so the updates are out before the commit).

A crash at any point leaves the local state a prefix of the changelog and the input
uncommitted past the last acknowledged batch; the replay is recognised row by row (each row
keeps the input offset it has applied up to). An update sent before a crash whose changelog
records were lost is sent again, with the same value, when the batch is folded again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from stream_app.agents.deadletter import dead_letter_record
from stream_app.agents.poison import isolate
from stream_app.app import app, settings
from stream_app.observability import (
    CHANGELOG_INTERLEAVED,
    CONSUMER_LAG,
    END_TO_END_SECONDS,
    EVENTS_IN,
    EVENTS_OUTCOME,
    EXPIRED_RESENDS,
    STALE_CHANGELOG_RECORDS,
    STREAM_REWINDS,
)
from stream_app.runtime import failpoints, gc_tuning
from stream_app.runtime.bulk_send import send_records
from stream_app.runtime.consumer import BatchConsumer, BatchMessage
from stream_app.runtime.state import (
    Encoded,
    Row,
    WriteBehindTable,
    encode_rows,
    producer_client,
)
from stream_app.schemas.base import (
    MAX_EVENT_BYTES,
    EventValidationError,
    decode_event,
    utf8_reason,
)
from stream_app.tables import limits
from stream_app.tables.dedupe import (
    CHUNK_PREFIX,
    PACKED_SINCE,
    Dedupe,
    changelog_rows,
    dedupe_key,
    expand,
    sweep,
)
from stream_app.topics import DEAD_LETTER

E = TypeVar("E", bound=msgspec.Struct)
log = logging.getLogger(__name__)

OUTCOMES = ("counted", "late", "duplicate", "redelivered", "dead_lettered", "erased")
"""The ``outcome`` values of ``wedding_events_outcome_total`` (``erased``: a GDPR erasure
event of the client-interactions topic)."""

POLL_S = 0.05
"""How often a batch waiting for a rebalance or a table restore looks again, seconds."""

SWEEP_EVERY_S = 60.0
"""How often a partition's expired dedupe records are looked for, seconds."""

SWEEP_MAX = 5_000
"""Most dedupe records one sweep looks at (the next sweep goes on from there)."""


@dataclass(slots=True)
class Folded:
    """What a stream's fold did to one partition's batch.

    Attributes:
        writes: rows to write, in order (a value of ``None`` deletes the row).
        outcomes: per folded event, its outcome label (``counted``, ``late``, ...).
        durable: coroutines to await with the changelog, before the input is acknowledged
            (late-event copies, final window values).
        publish: called once the rows are queued to the changelog (records the changes for
            :attr:`BatchStream.publish`).
        after: called once the rows are durable (records the changed organisations for
            :attr:`BatchStream.announce`).
        refused: ``(offset, row key)`` of the events the fold left out because they would
            take a value of that row past :data:`stream_app.tables.limits.ROW_LIMIT`
            (dead-lettered with :func:`stream_app.tables.limits.reason`).
    """

    writes: list[Row]
    outcomes: list[str]
    durable: list[Awaitable[Any]] = field(default_factory=list)
    publish: Callable[[], None] | None = None
    after: Callable[[], None] | None = None
    refused: list[tuple[int, str]] = field(default_factory=list)


RowLookup = Callable[[str], Any]
"""Reads a table row by key, as a fold must see it."""

RawRecord = Callable[[int], Any]
"""The consumed record at an offset of the partition being folded."""

Batch = Sequence[tuple[int, E]]
"""``(offset, event)`` pairs of one partition, ascending offsets."""

Fold = Callable[[int, RowLookup, Batch[Any], RawRecord], Folded]
"""``(partition, row lookup, [(offset, event)], raw record by offset) -> Folded``;
synchronous and pure apart from the lookups."""

Probe = Callable[[int, RowLookup, Batch[Any]], object]
"""``(partition, row lookup, [(offset, event)])``: the fold's pure part, its result thrown
away; raises as the fold would (:func:`stream_app.agents.poison.isolate`)."""


def _decode(
    message: BatchMessage, schema: type[E], key_of: Callable[[E], bytes]
) -> tuple[list[tuple[int, int, E]], list[tuple[Any, str, str]]]:
    """``(valid (offset, arrival ms, event), bad (record, field, reason))`` of a batch."""
    valid: list[tuple[int, int, E]] = []
    bad: list[tuple[Any, str, str]] = []
    decode = msgspec.json.Decoder(schema).decode
    for record in message.records:
        raw = record.value
        if raw is None:
            bad.append((record, "$", "the value is null (a tombstone)"))
            continue
        if len(raw) > MAX_EVENT_BYTES:
            bad.append(
                (record, "$", f"{len(raw):,} bytes; an event is at most {MAX_EVENT_BYTES:,}")
            )
            continue
        try:
            event = decode(raw)
        except msgspec.ValidationError:
            try:
                decode_event(raw, schema)
            except EventValidationError as exc:
                bad.append((record, exc.field, exc.reason))
                continue
            raise
        except msgspec.DecodeError:
            bad.append((record, "$", "the value is not JSON"))
            continue
        except UnicodeDecodeError as exc:  # bad UTF-8 inside a JSON string (msgspec)
            bad.append((record, "$", f"the value is {utf8_reason(raw, exc)}"))
            continue
        expected = key_of(event)
        if record.key != expected:
            bad.append((record, "key", f"message key {record.key!r} does not match {expected!r}"))
            continue
        ts = record.timestamp
        valid.append((record.offset, ts if ts is not None else int(time.time() * 1000), event))
    return valid, bad


class _RecordsByOffset:
    """The consumed record at an offset of one batch (:data:`RawRecord`); the index is built
    on the first lookup (only a batch with late events looks any up)."""

    __slots__ = ("_by_offset", "_records")

    def __init__(self, records: Sequence[Any]) -> None:
        self._records = records
        self._by_offset: dict[int, Any] | None = None

    def __call__(self, offset: int) -> Any:
        if self._by_offset is None:
            self._by_offset = {r.offset: r for r in self._records}
        return self._by_offset[offset]


IN_FLIGHT = 8
"""Batches past their fold and not yet acknowledged, at most (the pipeline's depth). A quiet
topic is fetched as many small batches (a few events per partition per fetch); each waits
one changelog round trip, so with a shallow pipeline they queue behind each other: at
1,000 events/s the median latency was 4.5-6.6 s with a depth of 2 and 76 ms with 8 (their
changelog records then share produce requests). 32 measured no better than 8."""

IN_FLIGHT_EVENTS = 20_000
"""Events in the batches past their fold and not yet acknowledged, at most (another batch is
folded only below it, or when none is in flight). A backlog is fetched as batches of
thousands of events, each folded for a good part of a second against a changelog round trip
of milliseconds, so one in flight keeps the pipeline busy: ``bench_million`` (1,000,000
events, 80,000 per poll, 16 MiB per partition fetch) folded 25,981 events/s in 890 MiB with
one, 24,282 and 22,354 in 937–993 MiB with two, 24,054 in 1,127 MiB with eight."""


class _Turns:
    """The highest sequence number done so far: :meth:`wait_for` returns once ``seq`` is."""

    def __init__(self) -> None:
        self._done = 0
        self._changed = asyncio.Event()

    def done(self, seq: int) -> None:
        """Mark ``seq`` (and everything before it) done."""
        self._done = max(self._done, seq)
        self._changed.set()

    async def wait_for(self, seq: int) -> None:
        """Return once ``seq`` is done."""
        while self._done < seq:
            self._changed.clear()
            await self._changed.wait()


@dataclass(slots=True)
class BatchStream(Generic[E]):
    """One input topic folded into one table by the batch loop (see the module docstring).

    Attributes:
        topic: the input topic's name.
        schema: the msgspec event class of the topic.
        key_of: the message key an event must have (``organization_id/<entity>``).
        table: the faust Table (changelogged, co-partitioned with ``topic``).
        fold: the stream's fold.
        prepare: awaited with the decoded events of a batch before it is folded (e.g. loads
            the organisations' zones); optional.
        publish: awaited right after a batch's changelog records are queued (sends the
            changes recorded by :attr:`Folded.publish`, without waiting); optional.
        announce: awaited after the rows are durable (marks cached reports stale); optional.
        on_partition: called with a partition the first time a batch of it is folded after
            an assignment, before the fold (e.g. rebuilds in-memory indexes); optional.
        probe: the fold's pure part, to find the events a failing fold fails on; without
            it a fold's error stops the agent (faust restarts it on the same batch).
    """

    topic: str
    schema: type[E]
    key_of: Callable[[E], bytes]
    table: Any
    fold: Fold
    prepare: Callable[[Sequence[E]], Awaitable[None]] | None = None
    publish: Callable[[], Awaitable[None]] | None = None
    announce: Callable[[], Awaitable[None]] | None = None
    on_partition: Callable[[int], Awaitable[None]] | None = None
    probe: Probe | None = None
    state: WriteBehindTable = field(init=False)
    _generations: dict[int, int] = field(default_factory=dict)
    _swept: dict[int, tuple[float, str | None]] = field(default_factory=dict)
    _newest_arrival: dict[int, int] = field(default_factory=dict)
    _in_flight: deque[tuple[asyncio.Future[None], int]] = field(default_factory=deque)
    _overlay: dict[int, dict[str, tuple[int, Any]]] = field(default_factory=dict)
    _next_offset: dict[int, tuple[int | None, int]] = field(default_factory=dict)
    _holes: dict[int, tuple[int | None, int, int]] = field(default_factory=dict)
    _seq: int = 0
    _generation_seen: int | None = -1
    _queued: _Turns = field(default_factory=lambda: _Turns())
    _runner: asyncio.Task[Any] | None = None
    _failure: BaseException | None = None

    def __post_init__(self) -> None:
        self.state = WriteBehindTable(self.table, expand=expand)
        # series at 0 from the start, so an alert on their first rise (increase(...) > 0)
        # sees it (an operator's trial: absent until first incremented, the first was missed)
        STREAM_REWINDS.labels(self.topic)
        EVENTS_IN.labels(self.topic)
        EXPIRED_RESENDS.labels(self.topic)
        for outcome in OUTCOMES:
            EVENTS_OUTCOME.labels(self.topic, outcome)
        CHANGELOG_INTERLEAVED.labels(self.table.name)
        STALE_CHANGELOG_RECORDS.labels(self.table.name)

    async def run(self, stream: AsyncIterable[Any]) -> None:
        """Consume the topic for ever (the body of the agent).

        Pipelined: batch N+1 is decoded and folded while batch N waits for its changelog
        acknowledgements (its rows are read from an in-memory overlay until they are in
        RocksDB); at most :data:`IN_FLIGHT` batches, and beyond one at most
        :data:`IN_FLIGHT_EVENTS` events, are past their fold and not yet acknowledged, and
        they finish in order (changelog records queued, RocksDB written, updates announced,
        offsets acknowledged: each in batch order).
        """
        # faust's compiled stream iterator acknowledges an event when the stream moves on,
        # inlining Consumer.ack (so not the batch consumer's): here a batch is acknowledged
        # explicitly, after its rows are durable and its changes announced
        stream.enable_acks = False  # type: ignore[attr-defined]
        self._runner = asyncio.current_task()
        self._failure = None
        try:
            try:
                async for event in stream.events():  # type: ignore[attr-defined]
                    message = event.message
                    if not isinstance(message, BatchMessage):
                        continue
                    EVENTS_IN.labels(self.topic).inc(len(message.records))
                    if message.generation_id != self._generation_seen:
                        await self._drain()  # a rebalance: finish what is in flight first
                        self._generation_seen = message.generation_id
                    while len(self._in_flight) >= IN_FLIGHT or (
                        self._in_flight and sum(n for _, n in self._in_flight) >= IN_FLIGHT_EVENTS
                    ):
                        await self._in_flight.popleft()[0]
                    await self.process(message, event)
            except asyncio.CancelledError:
                failure, self._failure = self._failure, None
                if failure is None:
                    raise
                raise failure from None  # a batch's write-behind failed: stop on its error
        except Exception:
            # the loop stops on an error and faust starts the agent again on this object: the
            # batches past their fold and not durable are cancelled below, so nothing folded
            # after the committed offsets may be taken as applied. Forget where each partition
            # was (its next batch starts from the committed offset: a batch after it is a hole,
            # sought back to it) and rebuild the in-memory indexes, as after an assignment.
            # Otherwise the next fetched batch is folded past the failed one, whose events then
            # come back as "redelivered" to the rows it moved (the attacker round's loss).
            self._next_offset.clear()
            self._holes.clear()
            self._generations.clear()
            raise
        finally:
            for task, _ in self._in_flight:
                task.cancel()
            self._in_flight.clear()
            self._overlay.clear()

    def _finished(self, task: asyncio.Future[None]) -> None:
        """A batch's write-behind ended: when it failed, stop the agent on its error at once
        (cancel the loop, which raises the error, :meth:`run`), instead of when the loop next
        awaits it: a quiet topic may bring no next batch, and the partitions would stall
        with no crash counted and no line logged (an attacker round's finding)."""
        if task.cancelled() or task.exception() is None or self._failure is not None:
            return
        self._failure = task.exception()
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()

    async def _drain(self) -> None:
        """Wait until every batch in flight is finished."""
        while self._in_flight:
            await self._in_flight.popleft()[0]

    def _reader(self, partition: int) -> RowLookup:
        """Rows of ``partition`` as the next fold must see them: the overlay of rows sent to
        the changelog and not yet in RocksDB, then RocksDB."""
        base = self.state.reader(partition)
        overlay = self._overlay.setdefault(partition, {})

        def get(key: str) -> Any:
            hit = overlay.get(key)
            return base(key) if hit is None else hit[1]

        return get

    async def _settled(self, message: BatchMessage) -> bool:
        """Wait out a rebalance or a table restore; whether the batch is still ours."""
        while app.rebalancing or app.in_recovery:  # noqa: ASYNC110 - faust's plain flags
            await asyncio.sleep(POLL_S)
        return (
            message.generation_id == app.consumer_generation_id
            and message.tp in app.consumer.assignment()
        )

    async def process(self, message: BatchMessage, event: Any = None) -> None:
        """Fold one partition's batch exactly once into the table (module docstring); the
        rest (write-behind, announce, acknowledge ``event``) goes on in a task of
        :attr:`_in_flight`."""
        partition = message.partition
        gc_tuning.follow_batch(len(message.records))
        with gc_tuning.paused():
            valid, bad = _decode(message, self.schema, self.key_of)
        failpoints.hit("decoded")
        client = producer_client(app)
        durable: list[Awaitable[Any]] = []
        if bad:
            EVENTS_OUTCOME.labels(self.topic, "dead_lettered").inc(len(bad))
            records = [
                dead_letter_record(r, topic=self.topic, partition=partition, field=f, reason=why)
                for r, f, why in bad
            ]
            durable.append(self._send_dead_letters(client, records))
        if self.prepare is not None and valid:
            await self.prepare([e for _, _, e in valid])
        if not await self._settled(message):
            for aw in durable:
                await aw
            return
        if self._generations.get(partition) != app.consumer_generation_id:
            await self._drain()
            self._generations[partition] = app.consumer_generation_id
            if self.on_partition is not None:
                await self.on_partition(partition)
                if not await self._settled(message):
                    for aw in durable:
                        await aw
                    return
        if not await self._in_order(message):
            for aw in durable:
                await aw
            return
        # --- no await from here to the changelog send: the fold sees a settled partition ---
        with gc_tuning.paused():  # the batch's rows stay alive until the fold ends
            get = self._reader(partition)
            horizon_ms = int(settings.dedupe_horizon_s * 1000)
            dedupe = Dedupe(get, horizon_ms)
            kept: list[tuple[int, E]] = []
            stamps: list[int] = []  # Kafka timestamps (ms) of the events folded
            duplicates = expired_resends = 0
            newest = self._newest_arrival.get(partition, 0)
            for offset, arrival, decoded in valid:
                newest = max(newest, arrival)
                # event ids are unique within a tenant only: the record is the organisation's
                scoped = f"{decoded.organization_id}/{decoded.event_id}"  # type: ignore[attr-defined]
                verdict = dedupe.check(scoped, offset, arrival)
                if verdict == "duplicate":
                    duplicates += 1
                    continue
                if verdict == "expired":
                    expired_resends += 1
                kept.append((offset, decoded))
                stamps.append(arrival)
            self._newest_arrival[partition] = newest
            raw = _RecordsByOffset(message.records)
            try:
                folded = self._fold(partition, get, kept, raw)
            except Exception as exc:  # noqa: BLE001 - any error of the fold: set aside its events
                kept, stamps, poisoned = self._set_aside(partition, get, kept, stamps, exc)
                left = [
                    (offset, poison, f"the fold failed: {type(error).__name__}: {error}")
                    for offset, poison, error in poisoned
                ]
                durable.append(self._leave_out(client, partition, raw, dedupe, left))
                folded = self._fold(partition, get, kept, raw)
            if folded.refused:  # events that would take a row past its largest value
                refused = dict(folded.refused)
                left = [(o, e, limits.reason(refused[o])) for o, e in kept if o in refused]
                durable.append(self._leave_out(client, partition, raw, dedupe, left))
                stamps = [ts for (o, _), ts in zip(kept, stamps, strict=True) if o not in refused]
            fold_records = encode_rows(folded.writes)
            # the batch's dedupe records travel packed (one changelog record per 4,096:
            # stream_app.tables.dedupe), each is read from the overlay until it is durable;
            # expired packed records are deleted locally, packed records whose records all
            # expired, and records with a changelog record each, from the changelog too.
            # Tombstones first: a record this batch renews after the sweep deleted it stays.
            dedupe_rows = dedupe.writes()
            since, dedupe_changelog = changelog_rows(
                dedupe_rows, dedupe.replaced(), get(PACKED_SINCE), settings.dedupe_packed
            )
            local_deletes, tombstones = self._sweep(partition, newest, horizon_ms, since)
            changelog = encode_rows([*tombstones, *dedupe_changelog]) + fold_records
            local_records = encode_rows(local_deletes)
            durable += folded.durable
        failpoints.hit("folded")
        # the records are not needed past the fold (a late-event copy holds ``raw``); the
        # folded events' timestamps are kept for the end-to-end latency once it is durable
        count = len(message.records)
        message.records = ()
        self._seq += 1
        seq = self._seq
        overlay = self._overlay.setdefault(partition, {})
        # what the next batch reads (a record renewed by this batch after its sweep's delete)
        overlaid: list[Row] = [
            *local_deletes,
            *tombstones,
            *dedupe_changelog,
            *dedupe_rows,
            *folded.writes,
        ]
        for key, value in overlaid:
            overlay[key] = (seq, value)
        previous = self._in_flight[-1][0] if self._in_flight else None
        task = asyncio.ensure_future(
            self._finish(
                previous,
                event,
                message,
                changelog,
                local_records,
                overlaid,
                durable,
                folded,
                seq,
                (duplicates, expired_resends),
                stamps,
            )
        )
        task.add_done_callback(self._finished)
        self._in_flight.append((task, count))
        # this batch's changelog records are queued before the next batch can queue its own
        await self._queued.wait_for(seq)

    def _fold(self, partition: int, get: RowLookup, batch: Batch[E], raw: RawRecord) -> Folded:
        """:attr:`fold` of a non-empty batch (an empty one changes nothing)."""
        if not batch:
            return Folded([], [])
        failpoints.fold_fails(batch)
        failpoints.fold_crashes_once(batch)
        return self.fold(partition, get, batch, raw)

    def _set_aside(
        self,
        partition: int,
        get: RowLookup,
        batch: list[tuple[int, E]],
        stamps: list[int],
        error: Exception,
    ) -> tuple[list[tuple[int, E]], list[int], list[tuple[int, E, Exception]]]:
        """After the fold of ``batch`` raised ``error``: ``(the events that fold, their
        timestamps, [(offset, event, its error)] of the poison events)``.

        Raises:
            Exception: ``error``, when there is no probe, no event fails alone, more than
                :data:`stream_app.agents.poison.MAX_POISONED` do, or the rest still fails.
        """
        probe = self.probe
        if probe is None:
            raise error

        def fold_only(events: Sequence[tuple[int, E]]) -> object:
            failpoints.fold_fails(events)
            return probe(partition, get, events) if events else None

        try:
            kept, poisoned = isolate(fold_only, batch)
        except Exception:  # noqa: BLE001 - too many to set aside: the fold's own error
            raise error from None
        if not poisoned:
            raise error
        out = {offset for (offset, _), _ in poisoned}
        stamps = [ts for (offset, _), ts in zip(batch, stamps, strict=True) if offset not in out]
        return kept, stamps, [(offset, event, exc) for (offset, event), exc in poisoned]

    def _leave_out(
        self,
        client: Any,
        partition: int,
        raw: RawRecord,
        dedupe: Dedupe,
        left_out: list[tuple[int, E, str]],
    ) -> Awaitable[None]:
        """Events of the batch not folded, ``(offset, event, reason)``: forget their dedupe
        records (a re-send of one is not a duplicate of an event never folded), log and count
        each; the sending of their dead-letter copies (``$``, the reason), to await before the
        batch's input is acknowledged. (The event is not faust's ``event``: that one is
        acknowledged with the batch.)"""
        for offset, left, why in left_out:
            org: str = left.organization_id  # type: ignore[attr-defined]
            event_id: str = left.event_id  # type: ignore[attr-defined]
            dedupe.forget(f"{org}/{event_id}")
            log.warning(
                "%s/%d@%d: event %r left out: %s; dead-lettered",
                self.topic,
                partition,
                offset,
                event_id,
                why,
            )
        EVENTS_OUTCOME.labels(self.topic, "dead_lettered").inc(len(left_out))
        return self._send_dead_letters(
            client,
            [
                dead_letter_record(
                    raw(offset), topic=self.topic, partition=partition, field="$", reason=why
                )
                for offset, _, why in left_out
            ],
        )

    async def _in_order(self, message: BatchMessage) -> bool:
        """Whether the batch may be folded: it starts at or before the partition's next
        offset in this generation (a redelivery is fine: rows skip what they hold).

        A batch after a hole (offsets never delivered: a fetch dropped around a rebalance)
        is not folded: folding it first would raise the rows' applied offsets past the
        hole, and the hole's events, delivered again later, would be skipped as already
        applied (the soak's events missing after a pause). The partition is sought back to
        its next offset instead (counted in ``wedding_stream_rewinds_total``); nothing of
        the batch is acknowledged. The generation starts at the consumer's committed offset.
        """
        partition, generation = message.partition, message.generation_id
        seen: tuple[int | None, int] | None = self._next_offset.get(partition)
        if seen is None or seen[0] != generation:
            consumer = app.consumer
            start = (
                consumer.committed_offset(message.tp)
                if isinstance(consumer, BatchConsumer)
                else None
            )
            seen = (generation, message.first_offset if start is None else start)
        expected = seen[1]
        hole = (generation, expected, message.first_offset)
        if message.first_offset > expected and self._holes.get(partition) == hole:
            # the same hole right after seeking back to it: offsets that are not in the log
            # (deleted by retention, transaction markers), not a delivery lost
            log.info(
                "%s/%d: offsets %d..%d are not in the log; going on from %d",
                self.topic,
                partition,
                expected,
                message.first_offset - 1,
                message.first_offset,
            )
        elif message.first_offset > expected:
            self._holes[partition] = hole
            log.warning(
                "%s/%d: batch %d..%d after a hole from %d; seeking back to %d",
                self.topic,
                partition,
                message.first_offset,
                message.offset,
                expected,
                expected,
            )
            STREAM_REWINDS.labels(self.topic).inc()
            self._next_offset[partition] = seen
            await app.consumer.seek(message.tp, expected)
            return False
        self._next_offset[partition] = (generation, max(expected, message.offset + 1))
        return True

    async def _finish(
        self,
        previous: asyncio.Future[None] | None,
        event: Any,
        message: BatchMessage,
        records: list[Encoded],
        local: list[Encoded],
        overlaid: list[Row],
        durable: list[Awaitable[Any]],
        folded: Folded,
        seq: int,
        screened: tuple[int, int],
        stamps: Sequence[int] = (),
    ) -> None:
        """Write behind, announce and acknowledge one folded batch, after the previous one:
        ``records`` (encoded rows) go to the changelog and RocksDB, ``local`` to RocksDB
        only, ``overlaid`` leave the overlay once durable."""
        partition = message.partition
        client = producer_client(app)
        try:
            sent = (
                await self.state.send_encoded(
                    client,
                    {partition: records} if records else {},
                    {partition: local} if local else {},
                )
                if records or local
                else None
            )
            if folded.publish is not None:
                with gc_tuning.paused():
                    folded.publish()
            if self.publish is not None:
                await self.publish()  # behind the changelog records, in batch order
        finally:
            self._queued.done(seq)
        await asyncio.gather(
            self.state.acknowledged(sent) if sent is not None else asyncio.sleep(0), *durable
        )
        if previous is not None:
            await previous
        if sent is not None:
            self.state.write_local(sent)
        # --- the rows are durable, in the changelog and in RocksDB ---
        overlay = self._overlay.get(partition, {})
        for key, _ in overlaid:
            hit = overlay.get(key)
            if hit is not None and hit[0] == seq:
                del overlay[key]
        duplicates, expired_resends = screened
        if duplicates:
            EVENTS_OUTCOME.labels(self.topic, "duplicate").inc(duplicates)
        if expired_resends:
            EXPIRED_RESENDS.labels(self.topic).inc(expired_resends)
        for outcome in set(folded.outcomes):
            EVENTS_OUTCOME.labels(self.topic, outcome).inc(folded.outcomes.count(outcome))
        if folded.after is not None:
            folded.after()
        if self.announce is not None:
            await self.announce()
        failpoints.hit("announced")
        if event is not None:
            event.ack()
        self.observe(message, stamps)

    def _sweep(
        self, partition: int, newest: int, horizon_ms: int, packed_since: int | None
    ) -> tuple[list[Row], list[Row]]:
        """``(deletes for RocksDB only, tombstones for the changelog)`` of ``partition``'s
        expired dedupe records and packed records (:func:`stream_app.tables.dedupe.sweep`):
        at most once a minute, at most :data:`SWEEP_MAX` records per sweep, going on from
        where the last stopped.

        A record written packed is deleted locally; the changelog holds it in its packed
        record until every record in that has expired. A restore in between brings an
        expired record back until the next sweep: a re-send two horizons after the first
        arrival is then ``expired`` (counted, and in the metric) instead of new (counted),
        and one whose producer kept the first send's Kafka timestamp is skipped as a
        ``duplicate`` instead of counted: past two horizons, what is recognised depends on
        when the partition was last restored."""
        now = time.monotonic()
        last, cursor = self._swept.get(partition, (0.0, None))
        if now - last < SWEEP_EVERY_S:
            return [], []
        local, tombstones, next_cursor = sweep(
            self.state.scan_from(partition, cursor or dedupe_key("")[:3]),
            self.state.scan_from(partition, CHUNK_PREFIX),
            self._overlay.get(partition, {}),
            newest,
            horizon_ms,
            SWEEP_MAX,
            packed_since,
        )
        self._swept[partition] = (now, next_cursor)
        return local, tombstones

    @staticmethod
    async def _send_dead_letters(
        client: Any, records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
    ) -> None:
        """Send dead-letter copies and await their acknowledgements."""
        futs = [await client.send(DEAD_LETTER, key=k, value=v, headers=h) for k, v, h in records]
        await asyncio.gather(*futs)

    def observe(self, message: BatchMessage, stamps: Sequence[int] = ()) -> None:
        """Record the end-to-end latency of the batch's folded events (Kafka timestamp, ms →
        now: re-sends and dead-lettered records are not in it) and the partition's lag."""
        END_TO_END_SECONDS.observe_ages((self.topic,), stamps, time.time() * 1000)
        try:
            highwater = app.consumer.highwater(message.tp)
        except Exception:  # noqa: BLE001 - a partition revoked meanwhile has no highwater
            return
        if highwater is not None:
            CONSUMER_LAG.labels(self.topic, str(message.partition)).set(
                max(0, highwater - message.offset - 1)
            )


__all__ = ["BatchStream", "Fold", "Folded", "send_records"]
