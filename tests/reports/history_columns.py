"""Column lists of the history tables, in the order the report tests ``COPY`` their rows."""

PAYMENT_COLUMNS = (
    "organization_id", "id", "booking_id", "kind", "amount_minor", "currency", "occurred_at",
)  # fmt: skip
"""``payments`` rows: (organisation, id, booking id, kind, amount in minor units, ISO 4217
currency, when it occurred)."""
