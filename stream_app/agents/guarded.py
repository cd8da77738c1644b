"""The payments, interactions and suppliers agents on the shared batch loop.

:class:`GuardedStream` binds one input topic, its msgspec schema, the entity of its message
key (``organization_id/<entity>``), its table and its pure fold
(:mod:`stream_app.tables.guarded`) to :class:`stream_app.agents.batch.BatchStream` (batch
delivery, dead letters, re-send dedupe, write-behind, exactly once per row), and publishes
each changed row, coalesced per batch, as a
:class:`stream_app.schemas.updates.GenericMetricUpdate` on ``realtime-metrics-updates``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from stream_app.agents.batch import INPUT_TOPIC, BatchStream, Folded
from stream_app.agents.data_versions import STREAM_OF_METRIC, DataVersions
from stream_app.agents.publisher import GenericMetricPublisher
from stream_app.app import app, settings
from stream_app.runtime.state import producer_client
from stream_app.tables.guarded import GuardedBatch, Lookup
from stream_app.topics import REALTIME_METRICS_UPDATES

E = TypeVar("E", bound=msgspec.Struct)

RAW_TOPIC: dict[str, Any] = INPUT_TOPIC
"""Topic options of an input topic (see :data:`stream_app.agents.batch.INPUT_TOPIC`)."""


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
    core: BatchStream[E] = field(init=False)

    def __post_init__(self) -> None:
        self.versions = DataVersions(
            settings.postgres_system_dsn, STREAM_OF_METRIC.get(self.metric, self.metric)
        )
        entity = self.entity_field
        self.core = BatchStream(
            topic=self.topic,
            schema=self.schema,
            key_of=lambda e: f"{getattr(e, 'organization_id')}/{getattr(e, entity)}".encode(),  # noqa: B009
            table=self.table,
            fold=self._fold,
            announce=self.announce,
        )

    def _fold(
        self,
        partition: int,
        get: Callable[[str], Any],
        batch: Sequence[tuple[int, E]],
        raw: Callable[[int], Any],
    ) -> Folded:
        result = self.fold(get, batch)

        def after() -> None:
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

        return Folded(result.writes, result.outcomes, after=after)

    async def announce(self) -> None:
        """Mark cached reports stale, then publish the changes (absolute values,
        at-least-once), once the batch's rows are durable."""
        self.versions.flush_soon()
        await self.publisher.publish(producer_client(app), REALTIME_METRICS_UPDATES)

    async def run(self, stream: AsyncIterable[Any]) -> None:
        """Consume the topic for ever (the body of the agent)."""
        await self.core.run(stream)
