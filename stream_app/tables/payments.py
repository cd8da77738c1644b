"""Payment totals per booking, all time and per calendar month (the organisation's) by supplier.

``payment-events`` is keyed ``organization_id/booking_id`` (see
:class:`stream_app.schemas.payments.PaymentEvent`), so an event's partition is decided by its
booking, and every row an event changes is a row of that booking (keys
``organization_id/booking_id/...``). Rows per supplier would mix bookings of every partition,
so there are none: a per-supplier total is obtained at read time by adding the ``by_supplier``
entries of the booking month rows across all partitions (every worker's table), per currency.

Definitions (amounts in minor units of their ISO 4217 currency, integers; amounts in different
currencies are never added together):

- a *payment* is one ``payment_received`` event; *paid* (per booking) or *collected* (per
  supplier) is the sum of their ``amount_minor``;
- a *refund* is one ``refund_issued`` event; *refunded* is the sum of their ``amount_minor``;
- the month of an event is the calendar month of ``occurred_at`` in the organisation's IANA
  zone (``organizations.time_zone``, :mod:`stream_app.agents.zones`; UTC for an organisation
  not registered when the event is folded): a payment at 2026-05-31T22:30Z of a Berlin
  organisation is in June;
- the supplier of an event is its ``supplier_id``, or ``-`` when none (the organisation itself);
- the *outstanding balance* of a booking, per currency, is computed at report time as
  booked value (``wedding-bookings``) − paid + refunded; it is not stored here.

Rows:

- ``org/booking/all/all``: ``{"payments", "refunds": counts, "paid_minor", "refunded_minor":
  {currency: minor units}}``;
- ``org/booking/month/YYYY-MM``: ``{"by_supplier": {supplier: {"payments", "refunds",
  "collected_minor", "refunded_minor"}}}`` (same units);

Exactly once: each row keeps the input offset it has applied up to (see
:mod:`stream_app.tables.guarded`); re-sent events are caught by :mod:`stream_app.tables.dedupe`.
"""

from __future__ import annotations

from stream_app.schemas.payments import PaymentEvent
from stream_app.tables.guarded import (
    Plan,
    RowRef,
    Values,
    ZoneOf,
    add,
    local_month,
    row_key,
    utc_zone,
    zoned_batch_fold,
)


def total_key(organization_id: str, booking_id: str) -> str:
    """Key of a booking's all-time payment row."""
    return row_key(organization_id, booking_id, "all", "all")


def month_key(organization_id: str, booking_id: str, month: str) -> str:
    """Key of a booking's payment row for the month ``YYYY-MM`` (the organisation's calendar)."""
    return row_key(organization_id, booking_id, "month", month)


def empty_total() -> Values:
    """The values of a booking with no payment yet."""
    return {"payments": 0, "refunds": 0, "paid_minor": {}, "refunded_minor": {}}


def fold_total(values: Values | None, ev: PaymentEvent) -> Values:
    """Apply one event to a booking's all-time row (returns new values)."""
    v = values or empty_total()
    out = dict(v)
    if ev.event_type == "payment_received":
        out["payments"] = v["payments"] + 1
        out["paid_minor"] = add(v["paid_minor"], ev.currency, ev.amount_minor)
    else:
        out["refunds"] = v["refunds"] + 1
        out["refunded_minor"] = add(v["refunded_minor"], ev.currency, ev.amount_minor)
    return out


def fold_month(values: Values | None, ev: PaymentEvent) -> Values:
    """Apply one event to a booking's month row, under its supplier (returns new values)."""
    by_supplier = dict((values or {}).get("by_supplier", {}))
    supplier = ev.supplier_id or "-"
    s = by_supplier.get(supplier) or {
        "payments": 0,
        "refunds": 0,
        "collected_minor": {},
        "refunded_minor": {},
    }
    s = dict(s)
    if ev.event_type == "payment_received":
        s["payments"] += 1
        s["collected_minor"] = add(s["collected_minor"], ev.currency, ev.amount_minor)
    else:
        s["refunds"] += 1
        s["refunded_minor"] = add(s["refunded_minor"], ev.currency, ev.amount_minor)
    by_supplier[supplier] = s
    return {"by_supplier": by_supplier}


def plan(ev: PaymentEvent, zone_of: ZoneOf) -> Plan:
    """The data rows of one payment event (all rows of its booking); its month on the
    calendar of ``zone_of(organisation)``."""
    org, booking = ev.organization_id, ev.booking_id
    total = RowRef.of(org, booking, "all", "all")
    month = RowRef.of(org, booking, "month", local_month(ev.occurred_at, zone_of(org)))
    return Plan(rows=[(total, lambda v: fold_total(v, ev)), (month, lambda v: fold_month(v, ev))])


fold_batch_in = zoned_batch_fold(plan)
"""``fold_batch_in(zone_of)(get, batch)``: fold one source partition's batch (``(offset,
event)``, ascending offsets) into the booking rows, exactly once
(:func:`stream_app.tables.guarded.fold_guarded` with :func:`plan`), months on the calendar of
each organisation's zone."""

fold_batch = fold_batch_in(utc_zone)
""":data:`fold_batch_in` with every organisation in UTC."""
