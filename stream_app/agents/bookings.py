"""The bookings agent: folds ``wedding-bookings`` into venue totals and event-time windows.

A fold agent (:class:`stream_app.agents.fold.FoldAgent`): the batch loop hands it one
partition's fetched batch at a time; :meth:`BookingsAgent.fold` folds it with
:func:`stream_app.tables.bookings.fold_batch` into seven rows per event (service-date day and
month; event-time hour, UTC day, local day, ISO week and month), one read and one write per
distinct row per batch, each row keeping the input offset it has applied up to.

State: one RocksDB table, ``venue-bookings`` (:mod:`stream_app.topology`), changelogged and
co-partitioned with ``wedding-bookings``; key ``org/venue/grain/period``, value ``{"totals",
"o"}`` (window rows gain ``"final": true`` once closed); ``~watermark/<partition>/<org>`` rows
hold each organisation's watermark; ``~e/<digest>`` rows the dedupe records.

Updates on ``realtime-metrics-updates``: every changed row of each batch, right behind the
batch's changelog records (early values, absolute, coalesced per batch); and once per
event-time window, when the organisation's watermark passes its end plus the grace period
(``WEDDING_GRACE_S``), its final value with ``"final": true``
(:class:`stream_app.schemas.updates.MetricUpdate`). A final value is sent and acknowledged
before the batch that closed the window is, so a crash can send it again (the same value),
never lose it. A window whose organisation sends no more events in the partition is not
closed (the watermark moves with event time only, as in Kafka Streams' suppression).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from stream_app.agents.batch import Batch, Folded, RawRecord, RowLookup
from stream_app.agents.fold import FoldAgent, FoldSpec
from stream_app.agents.publisher import MetricPublisher
from stream_app.agents.zones import OrganizationZones
from stream_app.app import app, settings
from stream_app.observability import FINAL_WINDOWS, LATE_EVENTS
from stream_app.runtime.state import producer_client
from stream_app.schemas.bookings import BookingEvent
from stream_app.schemas.updates import MetricValues
from stream_app.tables.bookings import BatchResult, RowChange, VenueTotals, WindowPolicy, fold_batch
from stream_app.tables.closing import OpenWindows
from stream_app.topics import LATE_EVENTS as LATE_EVENTS_TOPIC
from stream_app.topics import REALTIME_METRICS_UPDATES, WEDDING_BOOKINGS
from stream_app.topology import bookings_topic, venue_bookings

METRIC = "venue_bookings"
GRACE = timedelta(seconds=settings.grace_s)


def _values(t: VenueTotals) -> MetricValues:
    return MetricValues(
        bookings=t.bookings,
        cancellations=t.cancellations,
        revenue_minor=t.revenue_minor,
        lead_time_days_sum=t.lead_time_days_sum,
        lead_time_bookings=t.lead_time_bookings,
    )


def watermark_key(partition: int) -> Callable[[str], str]:
    """The watermark row key of an organisation in ``partition``."""
    return lambda org: f"~watermark/{partition}/{org}"


async def late_copies(
    partition: int,
    batch: Sequence[tuple[int, BookingEvent]],
    result: BatchResult,
    raw: Callable[[int], Any],
) -> None:
    """Copy each late event to ``late-events`` (its original key and value, byte for byte)
    and await the acknowledgements. Headers: ``late.grains`` (comma-separated window grains
    it missed), ``late.grace_s``, ``late.source.topic`` / ``.partition`` / ``.offset``."""
    client = producer_client(app)
    futs = []
    for index, grains in result.late.items():
        offset, _ = batch[index]
        record = raw(offset)
        for grain in grains:
            LATE_EVENTS.labels(WEDDING_BOOKINGS, grain).inc()
        headers = [
            ("late.grains", ",".join(grains).encode()),
            ("late.grace_s", str(settings.grace_s).encode()),
            ("late.source.topic", WEDDING_BOOKINGS.encode()),
            ("late.source.partition", str(partition).encode()),
            ("late.source.offset", str(offset).encode()),
        ]
        futs.append(
            await client.send(
                LATE_EVENTS_TOPIC,
                key=record.key,
                value=record.value,
                headers=headers,
            )
        )
    await asyncio.gather(*futs)


def _record(target: MetricPublisher, c: RowChange) -> None:
    target.record(
        metric=METRIC,
        organization_id=c.organization_id,
        key=c.venue_id,
        grain=c.grain,
        period=c.period,
        old=_values(c.old),
        new=_values(c.new),
        event_time=c.event_time,
        events=c.events,
        final=c.final,
    )


class BookingsAgent(FoldAgent[BookingEvent]):
    """The bookings fold: venue totals and event-time windows (see the module docstring).

    Attributes:
        zones: the organisations' IANA zones (PostgreSQL, cached).
        updates: collects the changed rows' early values (published with each batch's
            changelog records).
        finals: collects closed windows' final values (sent before the batch is acknowledged).
        open_windows: per partition, the windows not closed yet.
    """

    def __init__(self) -> None:
        self.zones = OrganizationZones(settings.postgres_system_dsn)
        self.finals = MetricPublisher()
        self.open_windows: dict[int, OpenWindows] = {}
        self.updates = MetricPublisher()
        spec = FoldSpec(WEDDING_BOOKINGS, BookingEvent, "venue_id", venue_bookings, METRIC)
        super().__init__(spec, self.updates)

    def fold(
        self, partition: int, get: RowLookup, batch: Batch[BookingEvent], raw: RawRecord
    ) -> Folded:
        """Fold one partition's batch (see the module docstring)."""
        index = self.open_windows.setdefault(partition, OpenWindows())
        policy = WindowPolicy(self.zones.zone_of, GRACE, watermark_key(partition), index.closing)
        result = fold_batch(get, batch, policy)
        durable: list[Awaitable[Any]] = []
        if result.late:
            durable.append(late_copies(partition, batch, result, raw))
        closed = [c for c in result.changes if c.final]
        if closed:
            for c in closed:
                _record(self.finals, c)
                FINAL_WINDOWS.labels(WEDDING_BOOKINGS, c.grain).inc()
            durable.append(
                self.finals.publish(producer_client(app), REALTIME_METRICS_UPDATES, wait=True)
            )

        # the next batch may be folded before this one is durable: it must see these windows
        for org, key, closes_at in result.opened:
            index.add(org, key, closes_at)

        def publish() -> None:
            for c in result.changes:
                if not c.final:
                    _record(self.updates, c)

        def after() -> None:
            for c in result.changes:
                if not c.final:
                    self.versions.record(c.organization_id)

        return Folded(result.writes, result.outcomes, durable, publish, after, result.refused)

    def probe(self, partition: int, get: RowLookup, batch: Batch[BookingEvent]) -> object:
        """The rows :meth:`fold` computes, without the open windows' index (pure)."""
        return fold_batch(
            get, batch, WindowPolicy(self.zones.zone_of, GRACE, watermark_key(partition))
        )

    async def prepare(self, events: Sequence[BookingEvent]) -> None:
        """Load the zones of the batch's organisations (PostgreSQL, cached)."""
        await self.zones.load(e.organization_id for e in events)

    async def on_partition(self, partition: int) -> None:
        """Rebuild the open windows of a partition just taken (scan of its window rows)."""
        rows = [(k, v) for k, v in self.core.state.scan(partition) if not k.startswith("~")]
        await self.zones.load({k.split("/", 1)[0] for k, _ in rows})
        self.open_windows[partition] = OpenWindows.rebuild(rows, self.zones.zone_of, GRACE)


bookings: BookingsAgent = BookingsAgent()
bookings_agent = bookings.agent(bookings_topic, f"{__name__}.bookings_agent")
