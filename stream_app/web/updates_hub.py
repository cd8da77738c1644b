"""One reader of ``realtime-metrics-updates`` per worker, fanned out to live-update streams.

Part of the HTTP layer: it reads Kafka (no consumer group: every worker reads every partition
itself, from the end, because any worker may serve any tenant's browser) and hands each
message to the streams it concerns (:mod:`stream_app.web.updates_filter`). It writes nothing.

Positions: each message handed to a stream carries the reader's position after it, every
partition's next offset (``{0: 17, 1: 4, 2: 0}``); the stream sends it sealed as the event's id
(:mod:`stream_app.web.updates_ids`: the offsets count every tenant's messages, so a client never
sees them), so a client that reconnects with ``Last-Event-ID`` gets exactly the messages after
the last one it saw (:meth:`UpdatesHub.replay`), on this worker or another.

Bounded replays: the topic holds every tenant's messages, so reading it back costs by how far
back a position goes, whoever asks. A position more than ``WEDDING_UPDATES_REPLAY_MAX`` messages
behind a partition's end is read back from (end − that) only (:func:`bound_resume`; the stream
says so with an ``event: gap``, which names no offset), and an organisation has at most
``WEDDING_UPDATES_MAX_REPLAYS`` replays running at once on a worker
(:attr:`UpdatesHub.replay_slots`).

Slow clients: each stream has a bounded queue (``WEDDING_UPDATES_QUEUE``); a stream whose queue
is full is dropped (its connection closed, ``wedding_updates_dropped_total`` counted), never
buffered without bound. It can reconnect with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter, Gauge

from stream_app.observability import REGISTRY
from stream_app.quotas import TenantSlots
from stream_app.web.errors import ApiError
from stream_app.web.updates_filter import UpdateFilter, Verdict
from stream_app.web.updates_ids import Position

log = logging.getLogger(__name__)

UPDATES_DROPPED = Counter(
    "wedding_updates_dropped",
    "Live-update streams dropped because their client fell behind by a full queue.",
    registry=REGISTRY,
)
UPDATES_STREAMS = Gauge(
    "wedding_updates_streams", "Live-update streams open on this worker.", registry=REGISTRY
)

FETCH_RECORDS = 200
"""Messages the reader hands out between two turns of the streams' writers: well below the
default queue, so a burst does not drop a client that keeps up."""


REPLAY_ORGS = 4
"""Organisations that may replay at their full share at once on a worker: the worker's
replay slots are this many times an organisation's (``WEDDING_UPDATES_MAX_REPLAYS``)."""


@dataclass(frozen=True)
class Gap:
    """Messages of one partition a resumed stream does not get back.

    Attributes:
        partition: the partition.
        requested: the offset the client asked to resume from.
        first_offset: the first offset it is read back from (the partition's end at the
            resume minus ``WEDDING_UPDATES_REPLAY_MAX``).
    """

    partition: int
    requested: int
    first_offset: int


def bound_resume(resume: Position, end: Position, max_back: int) -> tuple[Position, list[Gap]]:
    """``resume`` with each partition at most ``max_back`` messages behind ``end`` (the
    reader's position), and the partitions that were further behind, in partition order.

    A partition ahead of ``end``, or absent from it, is kept as it is.
    """
    bounded = dict(resume)
    gaps: list[Gap] = []
    for p in sorted(resume):
        first = end.get(p, 0) - max_back
        if p in end and resume[p] < first:
            bounded[p] = first
            gaps.append(Gap(p, resume[p], first))
    return bounded, gaps


Item = tuple[Position, str, bytes, dict[str, Any]]
"""(the reader's position after the message, kind, raw JSON body, decoded body) of one message
for a stream (the position must not be changed: streams share it)."""
END: Item = ({}, "", b"", {})
"""Put in a stream's queue when the stream must end (its writer stops at it)."""


@dataclass(eq=False)
class Subscriber:
    """One open stream.

    Attributes:
        filter: what the stream may and asked to see.
        queue: (position after the message, kind, raw JSON body, decoded body) waiting to be
            written.
        floor: partition → offset below which live messages were already sent by a replay
            (a client resuming from a position ahead of this worker's reader).
        on_drop: called once when the stream is dropped (closes its connection).
        dropped: set when the stream was dropped.
    """

    filter: UpdateFilter
    queue: asyncio.Queue[Item]
    floor: Position = field(default_factory=dict)
    on_drop: Callable[[], None] = lambda: None
    dropped: bool = False


class UpdatesHub:
    """The worker's reader of ``topic`` and its streams (started on the first stream)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        queue_size: int,
        max_streams_per_org: int,
        max_replays_per_org: int = 2,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.queue_size = queue_size
        self.max_streams_per_org = max_streams_per_org
        self.replay_slots = TenantSlots(max_replays_per_org * REPLAY_ORGS, max_replays_per_org)
        """Replays running on this worker: an organisation holds at most
        ``max_replays_per_org``, all of them :data:`REPLAY_ORGS` times that."""
        self.position: Position = {}
        self._by_org: dict[str, set[Subscriber]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        async with self._lock:
            if self._task is not None:
                return
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",  # only after a replay position fell off the log
            )
            partitions = await self._partitions()
            await consumer.start()
            try:
                tps = [TopicPartition(self.topic, p) for p in partitions]
                consumer.assign(tps)
                await consumer.seek_to_end(*tps)
                self.position = {tp.partition: await consumer.position(tp) for tp in tps}
            except BaseException:
                await consumer.stop()
                raise
            self._consumer = consumer
            self._task = asyncio.create_task(self._run(consumer), name="updates-hub")

    async def _partitions(self) -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        if not described or described[0].get("error_code", 0) != 0:
            raise ApiError(503, "unavailable", f"topic {self.topic} cannot be read; retry")
        return sorted(p["partition"] for p in described[0]["partitions"])

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=500, max_records=FETCH_RECORDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broker hiccup: logged, retried (the reader must not die)
                log.exception("updates hub: reading %s failed; retrying", self.topic)
                await asyncio.sleep(1)
                continue
            for tp, records in batches.items():
                for rec in records:
                    self.position[tp.partition] = rec.offset + 1
                    if rec.key is not None and rec.value is not None:
                        self._dispatch(tp.partition, rec.offset, rec.key, rec.value)
                await asyncio.sleep(0)  # let the streams write before the next batch

    def _dispatch(self, partition: int, offset: int, key: bytes, value: bytes) -> None:
        org = key.split(b"/", 1)[0].decode("utf-8", "replace")
        subs = self._by_org.get(org)
        if not subs:
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        kind = str(doc.get("kind", "message"))
        after = dict(self.position)
        for sub in list(subs):
            if sub.floor and offset < sub.floor.get(partition, 0):
                continue
            if sub.filter.verdict(key, doc) is Verdict.HIDE:
                continue
            at = _max(after, sub.floor) if sub.floor else after
            try:
                sub.queue.put_nowait((at, kind, value, doc))
            except asyncio.QueueFull:
                self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        log.info("updates: dropping a stream of %s (queue full)", sub.filter.organization_id)
        UPDATES_DROPPED.inc()
        sub.dropped = True
        self.unsubscribe(sub)
        sub.on_drop()  # its writer may be blocked on the socket: the abort wakes it

    async def subscribe(
        self, filt: UpdateFilter, resume: Position | None, on_drop: Callable[[], None]
    ) -> tuple[Subscriber, Position]:
        """A new stream from now (or ``resume``) on; returns it and the reader's position when
        it joined (the replay of ``resume`` stops there, see :meth:`replay`).

        Raises:
            ApiError: 429 ``too_many_streams`` (naming ``organization_id``) when the
                organisation has ``max_streams_per_org`` streams open on this worker; 503
                when the topic cannot be read.
        """
        await self._start()
        subs = self._by_org.setdefault(filt.organization_id, set())
        if len(subs) >= self.max_streams_per_org:
            raise ApiError(
                429,
                "too_many_streams",
                f"this organisation has {len(subs)} live-update streams open on this worker"
                " (WEDDING_UPDATES_MAX_CLIENTS); close one",
                field="organization_id",
            )
        joined = dict(self.position)
        floor = {p: o for p, o in (resume or {}).items() if o > joined.get(p, 0)}
        sub = Subscriber(filt, asyncio.Queue(self.queue_size), floor, on_drop)
        subs.add(sub)
        UPDATES_STREAMS.inc()
        return sub, joined

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget ``sub`` (idempotent)."""
        subs = self._by_org.get(sub.filter.organization_id)
        if subs is not None and sub in subs:
            subs.discard(sub)
            UPDATES_STREAMS.dec()

    async def replay(
        self, start: Position, until: Position
    ) -> AsyncIterator[tuple[Position, bytes, bytes, dict[str, Any], int, int]]:
        """The messages from ``start`` up to (not including) ``until``, per partition in
        offset order: ``(position after it, key, raw body, decoded body, partition, offset)``.

        Partitions missing from ``start`` are not replayed. A ``start`` before the log's
        retained start begins at the earliest retained message.
        """
        todo = {p: o for p, o in start.items() if p in until and o < until[p]}
        if not todo:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            tps = {p: TopicPartition(self.topic, p) for p in todo}
            consumer.assign(list(tps.values()))
            for p, tp in tps.items():
                consumer.seek(tp, todo[p])
            cursor = _max(until, start)
            cursor.update(todo)
            remaining = set(todo)
            while remaining:
                batches = await consumer.getmany(*[tps[p] for p in remaining], timeout_ms=1000)
                for tp, records in batches.items():
                    for rec in records:
                        if rec.offset >= until[tp.partition]:
                            remaining.discard(tp.partition)
                            break
                        cursor[tp.partition] = rec.offset + 1
                        if rec.key is None or rec.value is None:
                            continue
                        try:
                            doc = orjson.loads(rec.value)
                        except orjson.JSONDecodeError:
                            continue
                        if isinstance(doc, dict):
                            at = dict(cursor)
                            yield at, rec.key, rec.value, doc, tp.partition, rec.offset
                for p in list(remaining):
                    if await consumer.position(tps[p]) >= until[p]:
                        remaining.discard(p)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        """End every stream and stop reading (the worker's shutdown): a stream ends cleanly
        after what it has queued; one whose queue is full (a client not reading) is dropped."""
        for subs in list(self._by_org.values()):
            for sub in list(subs):
                self.unsubscribe(sub)
                sub.dropped = True
                try:
                    sub.queue.put_nowait(END)
                except asyncio.QueueFull:
                    sub.on_drop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def _max(a: Position, b: Position) -> Position:
    return {p: max(a.get(p, 0), b.get(p, 0)) for p in a.keys() | b.keys()}
