"""The batch loop shared by the payments, interactions and suppliers agents.

The same design as :mod:`stream_app.agents.bookings`, written once: events are taken in
batches (up to ``WEDDING_BATCH_MAX_EVENTS`` or what arrives within
``WEDDING_BATCH_MAX_SECONDS``), grouped by source partition; each message is decoded and
validated (a bad one goes to the dead-letter topic, byte for byte, and the agent goes on), its
key checked against ``organization_id/<entity>`` of the event; the valid events of a partition
are folded by the table's pure ``fold_batch`` (:mod:`stream_app.tables.guarded`: exactly once
under redelivery without Kafka transactions), the rows are written in the fold's order to
that partition's RocksDB and changelog (:class:`stream_app.agents.table_writer.TableWriter`,
acknowledged before the batch's offsets can be committed), and each
changed row is published, coalesced per batch, as a
:class:`stream_app.schemas.updates.GenericMetricUpdate` on ``realtime-metrics-updates``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
from faust.types import EventT

from stream_app.agents.data_versions import STREAM_OF_METRIC, DataVersions
from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.agents.publisher import GenericMetricPublisher
from stream_app.agents.settle import settle
from stream_app.agents.table_writer import TableWriter
from stream_app.app import app, settings
from stream_app.observability import EVENTS_IN, EVENTS_OUTCOME
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.tables.guarded import GuardedBatch, Lookup
from stream_app.topics import REALTIME_METRICS_UPDATES

E = TypeVar("E", bound=msgspec.Struct)

RAW_TOPIC: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
"""Topic options: keys and values as raw bytes (decoded and validated by the agent)."""


@dataclass(slots=True)
class GuardedStream(Generic[E]):
    """One input topic folded into one table.

    Attributes:
        topic: the input topic's name.
        schema: the msgspec event class of the topic.
        entity_field: the event attribute naming the entity of the message key
            (``booking_id``, ``client_id``, ``supplier_id``).
        table: the faust Table (changelogged, co-partitioned with ``topic``).
        metric: the metric name in ``realtime-metrics-updates``.
        fold: the table's pure ``fold_batch``.
        publisher: collects the changed rows between two publishes.
    """

    topic: str
    schema: type[E]
    entity_field: str
    table: Any
    metric: str
    fold: Callable[[Lookup, Sequence[tuple[int, E]]], GuardedBatch[Any]]
    publisher: GenericMetricPublisher = field(default_factory=GenericMetricPublisher)
    versions: DataVersions = field(init=False)
    writer: TableWriter = field(init=False)

    def __post_init__(self) -> None:
        self.writer = TableWriter(self.table)
        self.versions = DataVersions(
            settings.postgres_system_dsn, STREAM_OF_METRIC.get(self.metric, self.metric)
        )

    def key_mismatch(self, key: bytes | None, event: E) -> str | None:
        """Why the message key does not fit the event (``None`` when it fits).

        The key must be ``organization_id/<entity>`` of the event: a wrong key would put the
        event in another partition than its entity's rows (and possibly next to another
        tenant's data).
        """
        org = getattr(event, "organization_id")  # noqa: B009
        expected = f"{org}/{getattr(event, self.entity_field)}".encode()
        if key != expected:
            return (
                f"message key {key!r} does not match organization_id/{self.entity_field}"
                f" {expected!r}"
            )
        return None

    async def validate(self, event: EventT[bytes]) -> E | None:
        """Decode one message; dead-letter it and return None when it is invalid."""
        raw = event.message.value
        if raw is None:
            await send_to_dead_letter(event, field="$", reason="the value is null (a tombstone)")
            return None
        try:
            decoded = decode_event(raw, self.schema)
        except EventValidationError as exc:
            await send_to_dead_letter(event, field=exc.field, reason=exc.reason)
            return None
        mismatch = self.key_mismatch(event.message.key, decoded)
        if mismatch is not None:
            await send_to_dead_letter(event, field="key", reason=mismatch)
            return None
        return decoded

    async def decode_batch(
        self, events: Sequence[EventT[bytes]]
    ) -> dict[int, tuple[EventT[bytes], list[tuple[int, E]]]]:
        """Validate a batch (bad events are dead-lettered): per partition, its last event and
        the valid ``(offset, event)`` pairs, in ascending offsets."""
        out: dict[int, tuple[EventT[bytes], list[tuple[int, E]]]] = {}
        for event in events:
            valid = out.setdefault(event.message.partition, (event, []))[1]
            out[event.message.partition] = (event, valid)  # the partition's last event
            decoded = await self.validate(event)
            if decoded is None:
                EVENTS_OUTCOME.labels(self.topic, "dead_lettered").inc()
            else:
                valid.append((event.message.offset, decoded))
        return out

    def fold_partition(self, last: EventT[bytes], valid: Sequence[tuple[int, E]]) -> Any:
        """Fold one partition's valid events and write the rows (synchronous: no await)."""
        partition = last.message.partition
        result = self.fold(self.writer.reader(partition), valid)
        self.writer.write(partition, result.writes)
        return result

    def after_fold(self, result: GuardedBatch[Any]) -> None:
        """Count the outcomes and note the row changes for the next publish."""
        for outcome in ("counted", "duplicate"):
            n = result.outcomes.count(outcome)
            if n:
                EVENTS_OUTCOME.labels(self.topic, outcome).inc(n)
        for c in result.changes:
            self.versions.record(c.row.organization_id)
            self.publisher.record(
                metric=self.metric,
                organization_id=c.row.organization_id,
                key=c.row.entity,
                grain=c.row.grain,
                period=c.row.period,
                old=c.old or {},
                new=c.new,
                event_time=c.event_time,
                events=c.events,
            )

    async def process_batch(self, batch: Sequence[EventT[bytes]]) -> None:
        """Validate, fold and write a batch.

        Dead-letter sends (which await) come before
        :func:`stream_app.agents.settle.settle`; from its ownership check to the last row
        written nothing awaits, so a rebalance cannot take a partition away between the check
        and the writes (see :func:`stream_app.agents.bookings.process_batch`).
        """
        parts = await self.decode_batch(batch)
        owned = {e.message.partition for e in await settle(batch)}
        # --- no await from here to the last write ---
        results = [
            self.fold_partition(last, valid)
            for p, (last, valid) in parts.items()
            if p in owned and valid
        ]
        # --- writes done ---
        for result in results:
            self.after_fold(result)
        await asyncio.gather(self.writer.flush(app.producer), self.announce())

    async def announce(self) -> None:
        """Mark cached reports stale, then publish the changes, beside the changelog flush
        (see :func:`stream_app.agents.bookings.announce`)."""
        await self.versions.flush()
        await self.publisher.publish(app.producer, REALTIME_METRICS_UPDATES)

    async def run(self, stream: AsyncIterable[Any]) -> None:
        """Consume the topic for ever (the body of the agent)."""
        async for batch in stream.take_events(  # type: ignore[attr-defined]
            settings.batch_max_events, within=settings.batch_max_seconds
        ):
            EVENTS_IN.labels(self.topic).inc(len(batch))
            await self.process_batch(batch)
