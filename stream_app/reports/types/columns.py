"""The columns several report types share, defined once.

A report type builds its column lists from these and from its own definitions, so a column that
means the same in two reports (``venue_id``, the ``currency`` of the money columns, the
``cancellation_rate`` of a month) has one name, type and description everywhere. A column whose
meaning differs between types (``revenue``: booked minus cancelled, or the amount of the
weddings) keeps its own definition in its type.
"""

from __future__ import annotations

from stream_app.reports.model import Column

VENUE_ID = Column("venue_id", "text", "venue id")
VENUE_NAME = Column("venue_name", "text", "venue name")
VENUE = (VENUE_ID, VENUE_NAME)
"""The two columns that open a per-venue table."""

CURRENCY = Column("currency", "text", "ISO 4217 code of the money columns")
"""The currency of every ``money`` column of the row."""

REVENUE_CURRENCY = Column("currency", "text", "ISO 4217 code of the revenue columns")
"""The currency of the row's ``revenue`` and ``revenue_minor``."""

REVENUE_MINOR = Column("revenue_minor", "int", "the same in minor units")
"""``revenue`` again in minor units (cents), for a reader that wants integers."""

CANCELLATIONS = Column("cancellations", "int", "of which cancelled")
"""The cancelled part of the row's ``bookings``."""

CANCELLATION_RATE = Column(
    "cancellation_rate", "percent", "cancellations / bookings × 100, 2 decimals"
)
"""``cancellations`` ÷ ``bookings`` × 100 of the same row."""
