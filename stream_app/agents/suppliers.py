"""The suppliers agent: folds ``supplier-activities`` into the ``supplier-activity`` table.

Per event: decode and validate (a bad event goes to the dead-letter topic and the agent goes
on), check that the message key is ``organization_id/supplier_id`` of the event, skip an
event re-sent within the dedupe horizon, update the rows (metrics, units and row keys in
:mod:`stream_app.tables.suppliers`) and publish each changed row, coalesced per batch, as a
``GenericMetricUpdate`` (metric ``supplier_activity``) on ``realtime-metrics-updates``.

Batches, partitions and exactly once without transactions: as the bookings agent, through
:class:`stream_app.agents.guarded.GuardedStream` on the shared batch loop
(:mod:`stream_app.agents.batch`); each row keeps the input offset it has applied up to
(:mod:`stream_app.tables.guarded`).

State: one RocksDB table, ``supplier-activity``,
changelogged and co-partitioned with ``supplier-activities``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from stream_app.agents.guarded import RAW_TOPIC, GuardedStream
from stream_app.app import app, rocksdb_options, settings
from stream_app.schemas.suppliers import SupplierActivityEvent
from stream_app.tables.suppliers import fold_batch
from stream_app.topics import SUPPLIER_ACTIVITIES

METRIC = "supplier_activity"

suppliers_topic = app.topic(SUPPLIER_ACTIVITIES, partitions=settings.topic_partitions, **RAW_TOPIC)

supplier_activity_table = app.Table(
    "supplier-activity",
    default=None,
    partitions=settings.topic_partitions,
    options=rocksdb_options(settings),
)

suppliers_stream: GuardedStream[SupplierActivityEvent] = GuardedStream(
    topic=SUPPLIER_ACTIVITIES,
    schema=SupplierActivityEvent,
    entity_field="supplier_id",
    table=supplier_activity_table,
    metric=METRIC,
    fold=fold_batch,
)


@app.agent(suppliers_topic)
async def suppliers_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``supplier-activities`` for ever (see the module docstring)."""
    await suppliers_stream.run(stream)
