"""The bookings agent: folds ``wedding-bookings`` into venue totals per day and month.

Per event: decode and validate (a bad event goes to the dead-letter topic and the agent goes
on), check that the message key belongs to the event's tenant, skip an ``event_id`` already
folded, then update the venue's day row and month row and note both changes for
``realtime-metrics-updates``.

Events are taken in batches (up to ``WEDDING_BATCH_MAX_EVENTS`` or what arrives within
``WEDDING_BATCH_MAX_SECONDS``), grouped by partition, folded in memory, and each changed row is
written once per batch: the changelog carries one message per changed row, not per event.

State: one RocksDB table, ``venue-bookings``, changelogged and co-partitioned with
``wedding-bookings``; key ``org/venue/grain/period``; id rows (days, hours) hold
``{"totals", "event_ids", "offsets"}``, roll-up rows (months, weeks)
``{"days": {day: totals}, "totals": sum}``
(see :func:`stream_app.tables.bookings.fold_batch`). Event-time window rows keep the ids of
events at or above the partition's committed offset only (:func:`committed_offset`), so the
rows of the current hour and day do not grow with every event.

Exactly once in the table, with at-least-once delivery: every row that adds events up lists
the ids of the events it holds, in the same changelog record as its totals, and roll-ups are
copies of their day rows, never increments. So a redelivered, reordered or duplicated event
is recognised row by row, whatever survived a crash and in whatever order faust delivers the
partition again (it can re-deliver and skip offsets around a rebalance: see
:mod:`stream_app.offsets`). No Kafka transaction is needed, so table changes are visible at
once instead of at the next commit (2.8 s by default). What else a crash or a rebalance needs
(a complete changelog flush before each commit, local state dropped after an unclean stop, no
await between the ownership check and the writes) is in :func:`process_batch`,
:mod:`stream_app.producer_flush` and :mod:`stream_app.statedir`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from faust.types import EventT

from stream_app.agents.data_versions import DataVersions
from stream_app.agents.deadletter import send_to_dead_letter
from stream_app.agents.publisher import MetricPublisher
from stream_app.agents.settle import settle
from stream_app.agents.table_writer import TableWriter
from stream_app.agents.zones import OrganizationZones
from stream_app.app import app, rocksdb_options, settings
from stream_app.observability import (
    CONSUMER_LAG,
    END_TO_END_SECONDS,
    EVENTS_IN,
    EVENTS_OUTCOME,
    LATE_EVENTS,
)
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.bookings import BookingEvent
from stream_app.schemas.updates import MetricValues
from stream_app.tables.bookings import BatchResult, VenueTotals, WindowPolicy, fold_batch
from stream_app.topics import LATE_EVENTS as LATE_EVENTS_TOPIC
from stream_app.topics import REALTIME_METRICS_UPDATES, WEDDING_BOOKINGS

METRIC = "venue_bookings"

_raw: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
bookings_topic = app.topic(WEDDING_BOOKINGS, partitions=settings.topic_partitions, **_raw)
late_events_topic = app.topic(LATE_EVENTS_TOPIC, partitions=settings.topic_partitions, **_raw)
zones = OrganizationZones(settings.postgres_system_dsn)
GRACE = timedelta(seconds=settings.grace_s)

venue_bookings = app.Table(
    "venue-bookings",
    default=None,
    partitions=settings.topic_partitions,
    options=rocksdb_options(settings),
)

writer = TableWriter(venue_bookings)
publisher = MetricPublisher()
versions = DataVersions(settings.postgres_system_dsn, "bookings")


def _values(t: VenueTotals) -> MetricValues:
    return MetricValues(
        bookings=t.bookings,
        cancellations=t.cancellations,
        revenue_minor=t.revenue_minor,
        lead_time_days_sum=t.lead_time_days_sum,
        lead_time_bookings=t.lead_time_bookings,
    )


def key_mismatch(key: bytes | None, event: BookingEvent) -> str | None:
    """Why the message key does not fit the event (``None`` when it fits).

    The key must be ``organization_id/venue_id`` of the event: a wrong key would put the event
    in another partition than its venue's totals (and possibly next to another tenant's data).
    """
    expected = f"{event.organization_id}/{event.venue_id}".encode()
    if key != expected:
        return f"message key {key!r} does not match organization_id/venue_id {expected!r}"
    return None


async def validate(event: EventT[bytes]) -> BookingEvent | None:
    """Decode one message; dead-letter it and return None when it is invalid."""
    raw = event.message.value
    if raw is None:
        await send_to_dead_letter(event, field="$", reason="the value is null (a tombstone)")
        return None
    try:
        booking = decode_event(raw, BookingEvent)
    except EventValidationError as exc:
        await send_to_dead_letter(event, field=exc.field, reason=exc.reason)
        return None
    mismatch = key_mismatch(event.message.key, booking)
    if mismatch is not None:
        await send_to_dead_letter(event, field="key", reason=mismatch)
        return None
    return booking


async def send_late(
    events: Sequence[EventT[bytes]],
    valid: Sequence[tuple[int, BookingEvent]],
    late: Mapping[int, Sequence[str]],
) -> None:
    """Copy each late event (original key and value) to ``late-events``; await the acks.

    Headers: ``late.grains`` (comma-separated window grains it missed), ``late.grace_s``,
    ``late.source.topic`` / ``.partition`` / ``.offset``.
    """
    by_offset = {e.message.offset: e for e in events}
    futs = []
    for index, grains in late.items():
        offset, _ = valid[index]
        msg = by_offset[offset].message
        for grain in grains:
            LATE_EVENTS.labels(WEDDING_BOOKINGS, grain).inc()
        headers = [
            ("late.grains", ",".join(grains).encode()),
            ("late.grace_s", str(settings.grace_s).encode()),
            ("late.source.topic", msg.topic.encode()),
            ("late.source.partition", str(msg.partition).encode()),
            ("late.source.offset", str(msg.offset).encode()),
        ]
        futs.append(await late_events_topic.send(key=msg.key, value=msg.value, headers=headers))
    await asyncio.gather(*futs)


def observe_batch(batch: Sequence[EventT[bytes]]) -> None:
    """Record end-to-end latency (Kafka timestamp → now) and the lag of each partition."""
    now = time.time()
    last: dict[int, int] = {}
    for event in batch:
        END_TO_END_SECONDS.labels(WEDDING_BOOKINGS).observe(max(0.0, now - event.message.timestamp))
        last[event.message.partition] = event.message.offset
    for partition, offset in last.items():
        tp = batch[-1].message.tp._replace(partition=partition)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - a partition revoked meanwhile has no highwater
            continue
        if highwater is not None:
            CONSUMER_LAG.labels(WEDDING_BOOKINGS, str(partition)).set(
                max(0, highwater - offset - 1)
            )


async def decode_batch(
    events: Sequence[EventT[bytes]],
) -> dict[int, tuple[list[EventT[bytes]], list[tuple[int, BookingEvent]]]]:
    """Validate a batch (bad events are dead-lettered): per partition, its events and the
    valid ``(offset, event)`` pairs, in ascending offsets."""
    out: dict[int, tuple[list[EventT[bytes]], list[tuple[int, BookingEvent]]]] = {}
    for event in events:
        part = out.setdefault(event.message.partition, ([], []))
        part[0].append(event)
        booking = await validate(event)
        if booking is None:
            EVENTS_OUTCOME.labels(WEDDING_BOOKINGS, "dead_lettered").inc()
        else:
            part[1].append((event.message.offset, booking))
    return out


def committed_offset(event: EventT[bytes]) -> int | None:
    """The committed offset of ``event``'s partition as this worker's consumer knows it (the
    group's last commit; None before the first). faust commits only after flushing the
    changelog, so no message below it is delivered again."""
    committed: dict[Any, int | None] = getattr(app.consumer, "_committed_offset", {})
    return committed.get(event.message.tp)


def fold_partition(
    partition: int, last: EventT[bytes], valid: Sequence[tuple[int, BookingEvent]]
) -> BatchResult:
    """Fold one partition's valid events and write the rows (synchronous: no await)."""
    policy = WindowPolicy(zones.zone_of, GRACE, lambda org: f"~watermark/{partition}/{org}")
    committed = committed_offset(last)
    result = fold_batch(writer.reader(partition), valid, policy, committed)
    writer.write(partition, result.writes)
    return result


async def after_fold(
    events: Sequence[EventT[bytes]],
    valid: Sequence[tuple[int, BookingEvent]],
    result: BatchResult,
) -> None:
    """Count the outcomes, copy late events to ``late-events`` and note the row changes."""
    for outcome in ("counted", "late", "duplicate"):
        n = result.outcomes.count(outcome)
        if n:
            EVENTS_OUTCOME.labels(WEDDING_BOOKINGS, outcome).inc(n)
    if result.late:
        await send_late(events, valid, result.late)
    for c in result.changes:
        versions.record(c.organization_id)
        publisher.record(
            metric=METRIC,
            organization_id=c.organization_id,
            key=c.venue_id,
            grain=c.grain,
            period=c.period,
            old=_values(c.old),
            new=_values(c.new),
            event_time=c.event_time,
            events=c.events,
        )


async def process_batch(batch: Sequence[EventT[bytes]]) -> None:
    """Validate, fold and write a batch; return when its changelog records are acknowledged
    and its changes published (:func:`announce`).

    Everything that awaits (dead-letter sends, the organisations' zones from PostgreSQL) comes
    before :func:`stream_app.agents.settle.settle`; from its ownership check to the last row
    written nothing awaits, so a rebalance cannot take a partition away between the check and
    the writes: a worker never writes rows of a partition another worker may be restoring.
    """
    parts = await decode_batch(batch)
    await zones.load(b.organization_id for _, valid in parts.values() for _, b in valid)
    owned = {e.message.partition for e in await settle(batch)}
    # --- no await from here to the last write ---
    results = {
        p: fold_partition(p, events[-1], valid)
        for p, (events, valid) in parts.items()
        if p in owned and valid
    }
    # --- writes done ---
    for p, result in results.items():
        events, valid = parts[p]
        await after_fold(events, valid, result)
    await asyncio.gather(writer.flush(app.producer), announce())


async def announce() -> None:
    """Mark the cached reports that read the changed rows stale, then publish the changes.

    Runs beside the changelog flush: an update can go out before its rows' changelog records
    are acknowledged. If the worker dies in between, the events are folded again (their
    offsets were not committed) into the same values, and the same updates go out again:
    updates are at-least-once and carry absolute values.
    """
    await versions.flush()
    await publisher.publish(app.producer, REALTIME_METRICS_UPDATES)


@app.agent(bookings_topic)
async def bookings_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``wedding-bookings`` for ever (see the module docstring)."""
    async for batch in stream.take_events(  # type: ignore[attr-defined]
        settings.batch_max_events, within=settings.batch_max_seconds
    ):
        EVENTS_IN.labels(WEDDING_BOOKINGS).inc(len(batch))
        await process_batch(batch)
        observe_batch(batch)
