"""The base of the four fold agents (bookings, payments, interactions, suppliers).

:class:`FoldAgent` binds one input topic, its msgspec schema, the entity of its message key
(``organization_id/<entity>``) and its table (all declared in :mod:`stream_app.topology`) to
:class:`stream_app.agents.batch.BatchStream` (batch delivery, dead letters, re-send dedupe,
write-behind, exactly once per row). Once a batch's rows are durable it marks the cached
reports of the changed organisations stale (:class:`~stream_app.agents.data_versions.DataVersions`)
and publishes each changed row, coalesced per batch, on ``realtime-metrics-updates``
(right behind the batch's changelog records).

Per batch (:mod:`stream_app.agents.batch`): decode and validate (a bad event goes to the
dead-letter topic and the agent goes on), check that the message key is
``organization_id/<entity>`` of the event, skip an event re-sent within the dedupe horizon,
fold the rows in memory, make them durable (changelog with the updates behind it, then
RocksDB), then mark cached reports stale. Exactly
once without transactions: each row keeps the input offset it has applied up to
(:mod:`stream_app.tables.guarded`).

A subclass supplies :meth:`FoldAgent.fold` and its pure part :meth:`FoldAgent.probe` (and,
when it needs them, :meth:`FoldAgent.prepare` and :meth:`FoldAgent.on_partition`);
:class:`GuardedFoldAgent` is the one of the tables of :mod:`stream_app.tables.guarded`
(payments, interactions, suppliers), the bookings agent (:mod:`stream_app.agents.bookings`)
adds event-time windows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from stream_app.agents.batch import Batch, BatchStream, Folded, RawRecord, RowLookup
from stream_app.agents.data_versions import DataVersions
from stream_app.agents.publisher import GenericMetricPublisher, MetricPublisher
from stream_app.agents.zones import OrganizationZones
from stream_app.app import app, settings
from stream_app.observability import FOLD_CRASHES
from stream_app.runtime.state import producer_client
from stream_app.tables.guarded import GuardedBatch, Lookup, ZonedFold
from stream_app.topics import REALTIME_METRICS_UPDATES, STREAM_OF_METRIC

E = TypeVar("E", bound=msgspec.Struct)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FoldSpec(Generic[E]):
    """What a fold agent consumes and fills.

    Attributes:
        topic: the input topic's name.
        schema: the msgspec event class of the topic.
        entity_field: the event attribute naming the entity of the message key
            (``venue_id``, ``booking_id``, ``client_id``, ``supplier_id``).
        table: the faust Table (changelogged, co-partitioned with ``topic``;
            :mod:`stream_app.topology`).
        metric: the metric name in ``realtime-metrics-updates``.
    """

    topic: str
    schema: type[E]
    entity_field: str
    table: Any
    metric: str


class FoldAgent(Generic[E]):
    """One input topic folded into one table by the batch loop.

    Attributes:
        spec: the topic, schema, key entity, table and metric.
        publisher: collects the changed rows between two publishes.
        versions: the data versions of the metric's stream (report cache freshness).
        core: the batch loop.
    """

    def __init__(
        self, spec: FoldSpec[E], publisher: GenericMetricPublisher | MetricPublisher
    ) -> None:
        self.spec = spec
        # a series at 0 from the start, so an alert on any increase sees the first crash
        FOLD_CRASHES.labels(spec.topic)
        self.publisher = publisher
        self.versions = DataVersions(
            settings.postgres_system_dsn, STREAM_OF_METRIC.get(spec.metric, spec.metric)
        )
        self.core: BatchStream[E] = BatchStream(
            topic=spec.topic,
            schema=spec.schema,
            key_of=self.key_of,
            table=spec.table,
            fold=self.fold,
            prepare=self.prepare,
            publish=self.publish,
            announce=self.announce,
            on_partition=self.on_partition,
            probe=self.probe,
        )

    def key_of(self, event: E) -> bytes:
        """The message key ``event`` must have: ``organization_id/<entity>``."""
        org: str = event.organization_id  # type: ignore[attr-defined]
        return f"{org}/{getattr(event, self.spec.entity_field)}".encode()

    def fold(self, partition: int, get: RowLookup, batch: Batch[E], raw: RawRecord) -> Folded:
        """Fold one partition's batch (``(offset, event)`` pairs) into rows; ``get`` reads a
        row as the fold must see it, ``raw`` the record of an offset
        (:data:`stream_app.agents.batch.Fold`)."""
        raise NotImplementedError

    def probe(self, partition: int, get: RowLookup, batch: Batch[E]) -> object:
        """The pure part of :meth:`fold` (what it computes, nothing recorded or sent): raises
        as :meth:`fold` would (:data:`stream_app.agents.batch.Probe`)."""
        raise NotImplementedError

    async def prepare(self, events: Sequence[E]) -> None:
        """Awaited with a batch's decoded events before it is folded (nothing by default)."""

    async def on_partition(self, partition: int) -> None:
        """Awaited when a partition is first folded after an assignment (nothing by default)."""

    async def publish(self) -> None:
        """Publish the changes recorded so far (absolute values, at-least-once), right behind
        the batch's changelog records on the same producer (not waiting for acknowledgements)."""
        await self.publisher.publish(producer_client(app), REALTIME_METRICS_UPDATES)

    async def announce(self) -> None:
        """Mark the cached reports of the organisations recorded so far stale, once the
        batch's rows are durable (reports read RocksDB)."""
        self.versions.flush_soon()

    async def run(self, stream: AsyncIterable[Any]) -> None:
        """Consume the topic for ever (the body of the agent)."""
        await self.core.run(stream)

    def agent(self, channel: Any, name: str) -> Any:
        """Register on the faust app, under ``name``, the agent that consumes ``channel`` (the
        spec's topic, :mod:`stream_app.topology`) for ever with :meth:`run`; the agent."""

        async def consume(stream: AsyncIterable[Any]) -> None:
            try:
                await self.run(stream)
            except Exception as exc:  # counted and logged here, then by faust again
                self.crashed(exc)
                raise

        consume.__doc__ = f"Consume ``{self.spec.topic}`` for ever ({type(self).__name__})."
        return app.agent(channel, name=name)(consume)

    def crashed(self, exc: BaseException) -> None:
        """The agent stopped on ``exc`` (faust restarts it on the same batch): count it in
        ``wedding_fold_crashes_total`` and log it with its topic in the message, so the log's
        repeat throttle (:mod:`stream_app.logthrottle`, per message template) keeps one line
        per topic instead of folding two topics' crashes into one (faust's own
        ``Crashed reason=...`` line is the same template for every agent)."""
        FOLD_CRASHES.labels(self.spec.topic).inc()
        # the topic in the template (one throttle kind per topic), the rest as arguments
        template = f"{self.spec.topic}: the fold agent stopped on %s: %s; faust restarts it on"
        template += " the same batch"
        log.error(
            template,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )


class GuardedFoldAgent(FoldAgent[E]):
    """A fold agent of a guarded table (:mod:`stream_app.tables.guarded`): ``rows`` is the
    table's pure ``fold_batch``; each change is published as a
    :class:`stream_app.schemas.updates.GenericMetricUpdate`."""

    def __init__(
        self,
        spec: FoldSpec[E],
        rows: Callable[[Lookup, Batch[E]], GuardedBatch[Any]],
    ) -> None:
        self.generic = GenericMetricPublisher()
        self.rows = rows
        super().__init__(spec, self.generic)

    def probe(self, partition: int, get: RowLookup, batch: Batch[E]) -> object:
        """:attr:`rows` of the batch (pure)."""
        return self.rows(get, batch)

    def fold(self, partition: int, get: RowLookup, batch: Batch[E], raw: RawRecord) -> Folded:
        """Fold with :attr:`rows`; the changes are recorded for publishing once queued to the
        changelog, the organisations for the report cache once durable."""
        result = self.rows(get, batch)

        def after() -> None:
            for c in result.changes:
                self.versions.record(c.row.organization_id)

        def publish() -> None:
            for c in result.changes:
                self.generic.record(
                    metric=self.spec.metric,
                    organization_id=c.row.organization_id,
                    key=c.row.entity,
                    grain=c.row.grain,
                    period=c.row.period,
                    old=c.old or {},
                    new=c.new,
                    event_time=c.event_time,
                    events=c.events,
                )

        return Folded(
            result.writes, result.outcomes, publish=publish, after=after, refused=result.refused
        )


class ZonedFoldAgent(GuardedFoldAgent[E]):
    """A :class:`GuardedFoldAgent` whose rows are calendar periods of the organisation's IANA
    zone (payment and supplier months): each batch first loads the zones of its organisations
    (:class:`stream_app.agents.zones.OrganizationZones`, PostgreSQL, cached; UTC for an
    organisation not registered), then folds with ``zoned(zones.zone_of)``."""

    def __init__(self, spec: FoldSpec[E], zoned: ZonedFold[Any]) -> None:
        self.zones = OrganizationZones(settings.postgres_system_dsn)
        super().__init__(spec, zoned(self.zones.zone_of))

    async def prepare(self, events: Sequence[E]) -> None:
        """Load the zones of the batch's organisations."""
        await self.zones.load(
            e.organization_id  # type: ignore[attr-defined]
            for e in events
        )
