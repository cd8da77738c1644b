"""The payments agent: folds ``payment-events`` into the ``booking-payments`` table.

Per event: decode and validate (a bad event goes to the dead-letter topic and the agent goes
on), check that the message key is ``organization_id/booking_id`` of the event, skip an
event re-sent within the dedupe horizon, update the rows (metrics, units and row keys in
:mod:`stream_app.tables.payments`) and publish each changed row, coalesced per batch, as a
``GenericMetricUpdate`` (metric ``booking_payments``) on ``realtime-metrics-updates``.

Batches, partitions and exactly once without transactions: as the bookings agent, through
:class:`stream_app.agents.guarded.GuardedStream` on the shared batch loop
(:mod:`stream_app.agents.batch`); each row keeps the input offset it has applied up to
(:mod:`stream_app.tables.guarded`).

State: one RocksDB table, ``booking-payments``,
changelogged and co-partitioned with ``payment-events``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from stream_app.agents.guarded import RAW_TOPIC, GuardedStream
from stream_app.app import app, rocksdb_options, settings
from stream_app.schemas.payments import PaymentEvent
from stream_app.tables.payments import fold_batch
from stream_app.topics import PAYMENT_EVENTS

METRIC = "booking_payments"

payments_topic = app.topic(PAYMENT_EVENTS, partitions=settings.topic_partitions, **RAW_TOPIC)

booking_payments_table = app.Table(
    "booking-payments",
    default=None,
    partitions=settings.topic_partitions,
    options=rocksdb_options(settings),
)

payments_stream: GuardedStream[PaymentEvent] = GuardedStream(
    topic=PAYMENT_EVENTS,
    schema=PaymentEvent,
    entity_field="booking_id",
    table=booking_payments_table,
    metric=METRIC,
    fold=fold_batch,
)


@app.agent(payments_topic)
async def payments_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``payment-events`` for ever (see the module docstring)."""
    await payments_stream.run(stream)
