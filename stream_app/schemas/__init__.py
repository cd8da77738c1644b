"""Wire contracts: one msgspec Struct per event, used to produce, consume and validate.

Decoding validates in the same pass (types, ranges, time zones); :func:`decode_event` turns
every failure into :class:`EventValidationError` with the JSON path of the offending field.
"""

from stream_app.schemas.base import EventValidationError, decode_event, encode_event
from stream_app.schemas.bookings import BookingEvent
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.schemas.payments import PaymentEvent
from stream_app.schemas.suppliers import SupplierActivityEvent

__all__ = [
    "BookingEvent",
    "ClientInteractionEvent",
    "EventValidationError",
    "PaymentEvent",
    "SupplierActivityEvent",
    "decode_event",
    "encode_event",
]
