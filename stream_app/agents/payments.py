"""The payments agent: folds ``payment-events`` into the ``booking-payments`` table (rows, metrics
and units: :mod:`stream_app.tables.payments`), published as metric ``booking_payments``; message
key ``organization_id/booking_id``. How: :mod:`stream_app.agents.fold`.
"""

from __future__ import annotations

from stream_app.agents.fold import FoldSpec, GuardedFoldAgent, ZonedFoldAgent
from stream_app.schemas.payments import PaymentEvent
from stream_app.tables.payments import fold_batch_in
from stream_app.topics import PAYMENT_EVENTS
from stream_app.topology import booking_payments_table, payments_topic

payments_stream: GuardedFoldAgent[PaymentEvent] = ZonedFoldAgent(
    FoldSpec(
        PAYMENT_EVENTS,
        PaymentEvent,
        entity_field="booking_id",
        table=booking_payments_table,
        metric="booking_payments",
    ),
    fold_batch_in,
)
payments_agent = payments_stream.agent(payments_topic, f"{__name__}.payments_agent")
