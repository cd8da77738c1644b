"""Schema of the ``payment-events`` topic: money received for, or refunded on, a booking."""

from __future__ import annotations

from typing import Literal

from stream_app.schemas.base import EventBase, Identifier, MinorUnits, check_currency, check_label


class PaymentEvent(EventBase, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A payment received or a refund issued.

    Key on the topic: ``organization_id/booking_id``.

    Attributes:
        event_type: ``payment_received`` or ``refund_issued``.
        payment_id: the payment (a refund has its own id).
        booking_id: the booking paid for.
        supplier_id: the supplier or venue paid; None when the organisation itself.
        amount_minor: amount in minor units (cents), always positive; the event type says the
            direction.
        currency: ISO 4217 code; totals are kept per currency, never summed across them.
        method: how it was paid (``card``, ``bank_transfer``, ...), free text.
    """

    event_type: Literal["payment_received", "refund_issued"]
    payment_id: Identifier
    booking_id: Identifier
    amount_minor: MinorUnits
    currency: str
    supplier_id: Identifier | None = None
    method: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_currency(self.currency)
        check_label("method", self.method)
