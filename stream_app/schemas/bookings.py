"""Schema of the ``wedding-bookings`` topic: a booking is made or cancelled."""

from __future__ import annotations

from datetime import date
from typing import Literal

from stream_app.schemas.base import EventBase, Identifier, MinorUnits, check_currency

FIRST_SERVICE_YEAR, LAST_SERVICE_YEAR = 1900, 2099
"""Service dates the tables accept: the years their reads accept
(:data:`stream_app.tables.windows.FIRST_YEAR`, ``LAST_YEAR`` are these)."""
MAX_NIGHTS = 366
"""Longest stay in nights (a year)."""
MAX_LEAD_DAYS = 36_600
"""Longest lead time in days (a hundred years): it is summed in the tables."""
MAX_GUESTS = 100_000
"""Most guests of one booking."""


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
        super().__post_init__()
        check_currency(self.currency)
        if not FIRST_SERVICE_YEAR <= self.service_date.year <= LAST_SERVICE_YEAR:
            raise ValueError(
                f"$.service_date: the year must be {FIRST_SERVICE_YEAR}..{LAST_SERVICE_YEAR}"
                " (the years the tables can be read for)"
            )
        if not 0 <= self.nights <= MAX_NIGHTS:
            raise ValueError(f"$.nights: must be between 0 and {MAX_NIGHTS}")
        if self.lead_time_days is not None and not 0 <= self.lead_time_days <= MAX_LEAD_DAYS:
            raise ValueError(f"$.lead_time_days: must be between 0 and {MAX_LEAD_DAYS}")
        if self.guest_count is not None and not 0 <= self.guest_count <= MAX_GUESTS:
            raise ValueError(f"$.guest_count: must be between 0 and {MAX_GUESTS}")
