"""Schema of the ``wedding-bookings`` topic: a booking is made or cancelled."""

from __future__ import annotations

from datetime import date
from typing import Literal

from stream_app.schemas.base import (
    EventBase,
    Identifier,
    MinorUnits,
    check_currency,
    check_event_time,
    check_schema_version,
)

BOOKING_SCHEMA_VERSIONS = frozenset({1})


class BookingEvent(EventBase, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A booking of a venue or supplier for one wedding (or stay), or its cancellation.

    Key on the topic: ``organization_id/venue_id``, so a booking and its cancellation share a
    partition with the venue's totals.

    Attributes:
        event_type: ``booking_created`` or ``booking_cancelled``.
        booking_id: the booking this fact is about (a cancellation repeats the booking's id).
        venue_id: the venue (or supplier resource) booked.
        service_date: the local calendar date of the wedding or the stay's first night, in the
            organisation's IANA time zone. Calendar days and months of the booking tables are
            those of this date.
        amount_minor: booked value in minor units (cents). On a cancellation it is the value
            the cancellation removes (normally the booked value; 0 when a fee is kept).
        currency: ISO 4217 code of ``amount_minor``.
        nights: nights booked (0 for a day event).
        lead_time_days: days between booking and ``service_date``; None when unknown.
        guest_count: persons expected; None when unknown.
    """

    event_type: Literal["booking_created", "booking_cancelled"]
    booking_id: Identifier
    venue_id: Identifier
    service_date: date
    amount_minor: MinorUnits
    currency: str
    nights: int = 0
    lead_time_days: int | None = None
    guest_count: int | None = None

    def __post_init__(self) -> None:
        check_event_time(self.occurred_at)
        check_schema_version(self.schema_version, BOOKING_SCHEMA_VERSIONS)
        check_currency(self.currency)
        if self.nights < 0:
            raise ValueError("$.nights: must be >= 0")
        if self.lead_time_days is not None and self.lead_time_days < 0:
            raise ValueError("$.lead_time_days: must be >= 0")
        if self.guest_count is not None and self.guest_count < 0:
            raise ValueError("$.guest_count: must be >= 0")
