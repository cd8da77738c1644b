"""The payments agent: folds ``payment-events`` into the ``booking-payments`` table
(rows, metrics and units: :mod:`stream_app.tables.payments`), published as metric
``booking_payments``; message key
``organization_id/booking_id``. How: :mod:`stream_app.agents.fold`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from stream_app.agents.fold import GuardedFoldAgent
from stream_app.app import app
from stream_app.schemas.payments import PaymentEvent
from stream_app.tables.payments import fold_batch
from stream_app.topics import PAYMENT_EVENTS
from stream_app.topology import booking_payments_table, payments_topic

payments_stream: GuardedFoldAgent[PaymentEvent] = GuardedFoldAgent(
    topic=PAYMENT_EVENTS,
    schema=PaymentEvent,
    entity_field="booking_id",
    table=booking_payments_table,
    metric="booking_payments",
    rows=fold_batch,
)


@app.agent(payments_topic)
async def payments_agent(stream: AsyncIterable[Any]) -> None:
    """Consume ``payment-events`` for ever (see the module docstring)."""
    await payments_stream.run(stream)
