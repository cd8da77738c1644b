"""The interactions agent: folds ``client-interactions`` into ``client-interaction-totals``.

Per event: decode and validate (a bad event goes to the dead-letter topic and the agent goes
on), check that the message key is ``organization_id/client_id`` of the event, skip an
event re-sent within the dedupe horizon, update the rows (metrics, units and row keys in
:mod:`stream_app.tables.interactions`) and publish each changed row, coalesced per batch, as a
``GenericMetricUpdate`` (metric ``client_interactions``) on ``realtime-metrics-updates``.

Batches, partitions and exactly once without transactions: as the bookings agent, through
:class:`stream_app.agents.guarded.GuardedStream` on the shared batch loop
(:mod:`stream_app.agents.batch`); each row keeps the input offset it has applied up to
(:mod:`stream_app.tables.guarded`).

State: one RocksDB table, ``client-interaction-totals``,
changelogged and co-partitioned with ``client-interactions``. Its rows are keyed by client, so
its changelog is compacted within a bounded lag
(:func:`stream_app.topics.compacted_changelog_configs`): a ``client_erased`` event's tombstones
remove the client from it (GDPR Art. 17).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from stream_app.agents.guarded import RAW_TOPIC, GuardedStream
from stream_app.app import app, rocksdb_options, settings
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.interactions import fold_batch
from stream_app.topics import (
    CLIENT_INTERACTION_TOTALS,
    CLIENT_INTERACTIONS,
    compacted_changelog_configs,
)

METRIC = "client_interactions"

interactions_topic = app.topic(
    CLIENT_INTERACTIONS, partitions=settings.topic_partitions, **RAW_TOPIC
)

client_interactions_table = app.Table(
    CLIENT_INTERACTION_TOTALS,
    default=None,
    partitions=settings.topic_partitions,
    options=rocksdb_options(settings),
    extra_topic_configs=compacted_changelog_configs(settings.changelog_max_compaction_lag_ms),
)

interactions_stream: GuardedStream[ClientInteractionEvent] = GuardedStream(
    topic=CLIENT_INTERACTIONS,
    schema=ClientInteractionEvent,
    entity_field="client_id",
    table=client_interactions_table,
    metric=METRIC,
    fold=fold_batch,
)


@app.agent(interactions_topic)
async def interactions_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``client-interactions`` for ever (see the module docstring)."""
    await interactions_stream.run(stream)
