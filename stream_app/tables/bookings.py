"""Venue booking totals per calendar day and calendar month.

Definitions (used by the tables, the HTTP reads and the monthly booking summary):

- a *booking* is one ``booking_created`` event; it counts in the period of its
  ``service_date`` (the wedding's date, or the stay's first night), a local calendar date in
  the organisation's IANA zone, so a "month" is a calendar month in that zone;
- a *cancellation* is one ``booking_cancelled`` event, counted in the period of the cancelled
  booking's ``service_date`` (so the cancellation rate of a month is the share of that month's
  bookings that were cancelled, whenever the cancellation happened);
- *booked value* is the sum of ``amount_minor`` of bookings, *cancelled value* that of
  cancellations, and *revenue* is booked minus cancelled value, per currency, in minor units.
  Amounts in different currencies are never added together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from stream_app.schemas.bookings import BookingEvent

Grain = Literal["day", "month"]
GRAINS: tuple[Grain, ...] = ("day", "month")


def period_of(service_date: date, grain: Grain) -> str:
    """The period label of a local date: ``YYYY-MM-DD`` for a day, ``YYYY-MM`` for a month."""
    return service_date.isoformat() if grain == "day" else service_date.isoformat()[:7]


def table_key(organization_id: str, venue_id: str, grain: Grain, period: str) -> str:
    """Key of a venue-period row: ``organization_id/venue_id/grain/period``."""
    return f"{organization_id}/{venue_id}/{grain}/{period}"


def seen_key(event_id: str) -> str:
    """Key of the dedupe record of an event: ``~event/<event_id>``.

    ``~`` cannot occur in an organisation id, so these keys never collide with totals rows.
    """
    return f"~event/{event_id}"


@dataclass(slots=True)
class VenueTotals:
    """Booking totals of one venue in one period.

    Attributes:
        bookings: number of bookings (``booking_created`` events).
        cancellations: number of cancellations (``booking_cancelled`` events).
        booked_minor: booked value per ISO 4217 currency, in minor units.
        cancelled_minor: cancelled value per currency, in minor units.
    """

    bookings: int = 0
    cancellations: int = 0
    booked_minor: dict[str, int] = field(default_factory=dict)
    cancelled_minor: dict[str, int] = field(default_factory=dict)

    @property
    def revenue_minor(self) -> dict[str, int]:
        """Booked minus cancelled value, per currency, in minor units."""
        currencies = sorted(set(self.booked_minor) | set(self.cancelled_minor))
        return {c: self.booked_minor.get(c, 0) - self.cancelled_minor.get(c, 0) for c in currencies}

    def to_json(self) -> dict[str, Any]:
        """The table value: a JSON object with the four fields (integers only)."""
        return {
            "bookings": self.bookings,
            "cancellations": self.cancellations,
            "booked_minor": dict(self.booked_minor),
            "cancelled_minor": dict(self.cancelled_minor),
        }

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> VenueTotals:
        """Rebuild from :meth:`to_json` output; ``None`` (no row yet) gives zeros."""
        if not value:
            return cls()
        return cls(
            bookings=int(value["bookings"]),
            cancellations=int(value["cancellations"]),
            booked_minor={k: int(v) for k, v in value["booked_minor"].items()},
            cancelled_minor={k: int(v) for k, v in value["cancelled_minor"].items()},
        )


def fold_booking(totals: VenueTotals, event: BookingEvent) -> VenueTotals:
    """Apply one booking event to a venue-period's totals (returns a new value).

    The fold is commutative: the totals do not depend on the order of events, so a
    cancellation that arrives before its booking gives the same month-end figures.
    """
    booked = dict(totals.booked_minor)
    cancelled = dict(totals.cancelled_minor)
    if event.event_type == "booking_created":
        booked[event.currency] = booked.get(event.currency, 0) + event.amount_minor
        return VenueTotals(totals.bookings + 1, totals.cancellations, booked, cancelled)
    cancelled[event.currency] = cancelled.get(event.currency, 0) + event.amount_minor
    return VenueTotals(totals.bookings, totals.cancellations + 1, booked, cancelled)


Lookup = Callable[[str], dict[str, Any] | None]
"""Reads one table row by key; ``None`` when absent."""


@dataclass(slots=True)
class RowChange:
    """A table row changed by a batch: its identity, value before and after the batch.

    Attributes:
        organization_id / venue_id / grain / period: which row.
        old / new: totals before the batch's first change and after its last.
        event_time: the latest ``occurred_at`` folded into the row by the batch.
        events: events of the batch folded into the row.
    """

    organization_id: str
    venue_id: str
    grain: Grain
    period: str
    old: VenueTotals
    new: VenueTotals
    event_time: datetime
    events: int


@dataclass(slots=True)
class BatchResult:
    """What a batch does to the table.

    Attributes:
        writes: ``(key, value)`` to write, in this order: every month row, then every day row
            (see :func:`fold_batch` for why the order matters).
        outcomes: per input event, ``counted`` or ``duplicate``.
        changes: the changed rows, for ``realtime-metrics-updates``.
    """

    writes: list[tuple[str, dict[str, Any]]]
    outcomes: list[str]
    changes: list[RowChange]


def fold_batch(get: Lookup, batch: Sequence[tuple[int, BookingEvent]]) -> BatchResult:
    """Fold a batch of one partition's events, in offset order, into the venue rows.

    Args:
        get: reads the current value of a row.
        batch: ``(source offset, event)`` pairs of one source partition, ascending offsets.

    Row values: ``{"totals": VenueTotals JSON, "offset": highest source offset applied}``;
    day rows also hold ``"event_ids"``, the ids of every event folded into them. An event is a
    duplicate when its day row already lists its id.

    Exactly once under redelivery (at-least-once input, a crash anywhere): the caller writes
    ``writes`` in order to one changelog partition, so a crash keeps a prefix of them. Month
    rows precede day rows, so an event whose day row (with its id) survived also has its month
    row; an event whose day row was lost is folded again, except into month rows whose
    ``offset`` shows they already hold it.
    """
    rows: dict[str, dict[str, Any]] = {}
    id_sets: dict[str, set[str]] = {}
    originals: dict[str, VenueTotals] = {}
    changes: dict[str, RowChange] = {}
    outcomes: list[str] = []

    def load(key: str) -> dict[str, Any] | None:
        if key not in rows:
            value = get(key)
            if value is None:
                return None
            rows[key] = value
        return rows[key]

    for offset, ev in batch:
        day_period = period_of(ev.service_date, "day")
        day_key = table_key(ev.organization_id, ev.venue_id, "day", day_period)
        day_row = load(day_key)
        if day_key not in id_sets:
            id_sets[day_key] = set(day_row["event_ids"]) if day_row else set()
        if ev.event_id in id_sets[day_key]:
            outcomes.append("duplicate")
            continue
        id_sets[day_key].add(ev.event_id)
        for grain in ("month", "day"):
            period = period_of(ev.service_date, grain)
            key = table_key(ev.organization_id, ev.venue_id, grain, period)
            row = load(key)
            if grain == "month" and row is not None and row["offset"] >= offset:
                continue  # this month row already holds the event (written before a crash)
            old = VenueTotals.from_json(row["totals"] if row else None)
            originals.setdefault(key, old)
            new = fold_booking(old, ev)
            new_row: dict[str, Any] = {"totals": new.to_json(), "offset": offset}
            if grain == "day":
                new_row["event_ids"] = [*(row["event_ids"] if row else []), ev.event_id]
            rows[key] = new_row
            change = changes.get(key)
            if change is None:
                changes[key] = RowChange(
                    ev.organization_id,
                    ev.venue_id,
                    grain,
                    period,
                    originals[key],
                    new,
                    ev.occurred_at,
                    1,
                )
            else:
                change.new = new
                change.event_time = max(change.event_time, ev.occurred_at)
                change.events += 1
        outcomes.append("counted")
    ordered = sorted(changes, key=lambda k: changes[k].grain != "month")
    return BatchResult([(k, rows[k]) for k in ordered], outcomes, list(changes.values()))
