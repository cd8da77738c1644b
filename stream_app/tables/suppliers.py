"""Supplier activity per supplier and calendar month (the organisation's).

``supplier-activities`` is keyed ``organization_id/supplier_id``, so every row an event
changes is a row of its supplier (keys ``organization_id/supplier_id/...``) and lives in the
event's partition.

Definitions (all counts of events, integers):

- the month of an event is the calendar month of ``occurred_at`` in the organisation's IANA
  zone (``organizations.time_zone``, :mod:`stream_app.agents.zones`; UTC for an organisation
  not registered when the event is folded);
- ``tasks_assigned`` / ``tasks_completed`` / ``deliveries_made``: events of type
  ``task_assigned`` / ``task_completed`` / ``delivery_made``;
- a *completion* is a ``task_completed`` or ``delivery_made`` event; it is ``late`` when its
  ``occurred_at`` is after its ``due_at``, ``on_time`` when at or before it, and ``no_due``
  when it has no ``due_at``; ``on_time + late + no_due = tasks_completed + deliveries_made``;
- ``per_person``: per ``person_id`` (``-`` when none), the count of each event type: the
  workload per person.

Rows:

- ``org/supplier/month/YYYY-MM``: ``{"tasks_assigned", "tasks_completed", "deliveries_made",
  "on_time", "late", "no_due", "per_person": {person: {event_type: count}}}``;

Exactly once: each row keeps the input offset it has applied up to (see
:mod:`stream_app.tables.guarded`); re-sent events are caught by :mod:`stream_app.tables.dedupe`.
"""

from __future__ import annotations

from stream_app.schemas.suppliers import SupplierActivityEvent
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

COUNTERS = ("tasks_assigned", "tasks_completed", "deliveries_made", "on_time", "late", "no_due")
_COUNTER_OF = {
    "task_assigned": "tasks_assigned",
    "task_completed": "tasks_completed",
    "delivery_made": "deliveries_made",
}


def month_key(organization_id: str, supplier_id: str, month: str) -> str:
    """Key of a supplier's row for the month ``YYYY-MM`` (the organisation's calendar)."""
    return row_key(organization_id, supplier_id, "month", month)


def empty() -> Values:
    """The values of a supplier-month with no event yet."""
    return {**dict.fromkeys(COUNTERS, 0), "per_person": {}}


def fold_activity(values: Values | None, ev: SupplierActivityEvent) -> Values:
    """Apply one event to a supplier-month row (returns new values)."""
    out = dict(values or empty())
    out[_COUNTER_OF[ev.event_type]] += 1
    if ev.event_type != "task_assigned":
        if ev.due_at is None:
            out["no_due"] += 1
        elif ev.occurred_at > ev.due_at:
            out["late"] += 1
        else:
            out["on_time"] += 1
    per_person = dict(out["per_person"])
    person = ev.person_id or "-"
    per_person[person] = add(per_person.get(person), ev.event_type, 1)
    out["per_person"] = per_person
    return out


def plan(ev: SupplierActivityEvent, zone_of: ZoneOf) -> Plan:
    """The data row of one activity event: its month on the calendar of
    ``zone_of(organisation)``."""
    org = ev.organization_id
    row = RowRef.of(org, ev.supplier_id, "month", local_month(ev.occurred_at, zone_of(org)))
    return Plan(rows=[(row, lambda v: fold_activity(v, ev))])


fold_batch_in = zoned_batch_fold(plan)
"""``fold_batch_in(zone_of)(get, batch)``: fold one source partition's batch (``(offset,
event)``, ascending offsets) into the supplier-month rows, exactly once
(:func:`stream_app.tables.guarded.fold_guarded` with :func:`plan`), months on the calendar of
each organisation's zone."""

fold_batch = fold_batch_in(utc_zone)
""":data:`fold_batch_in` with every organisation in UTC."""
