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

The same table also holds **event-time windows** of booking activity (bookings made and
cancelled, by ``occurred_at``): tumbling hours and UTC days, and calendar days, ISO weeks and
months in the organisation's zone (grains and lateness: :mod:`stream_app.tables.windows`).
Their rows have the same shape; only the grain and the period label differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.windows import WindowGrain, is_closed, windows_of

Grain = Literal["day", "month"]
GRAINS: tuple[Grain, ...] = ("day", "month")


def period_of(service_date: date, grain: Grain) -> str:
    """The period label of a local date: ``YYYY-MM-DD`` for a day, ``YYYY-MM`` for a month."""
    return service_date.isoformat() if grain == "day" else service_date.isoformat()[:7]


def table_key(organization_id: str, venue_id: str, grain: Grain | WindowGrain, period: str) -> str:
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
    grain: Grain | WindowGrain
    period: str
    old: VenueTotals
    new: VenueTotals
    event_time: datetime
    events: int


@dataclass(slots=True)
class BatchResult:
    """What a batch does to the table.

    Attributes:
        writes: ``(key, value)`` to write, in this order: every month and event-time window
            row, then every day row, then the watermark row (see :func:`fold_batch` for why
            the order matters).
        outcomes: per input event, ``counted``, ``late`` (counted in the service-date totals
            but too late for at least one event-time window) or ``duplicate``.
        changes: the changed rows, for ``realtime-metrics-updates``.
        late: per late event (index into the batch), the window grains it missed.
    """

    writes: list[tuple[str, dict[str, Any]]]
    outcomes: list[str]
    changes: list[RowChange]
    late: dict[int, list[WindowGrain]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """How a batch folds event-time windows (None in :func:`fold_batch`: no windows).

    Attributes:
        zone_of: the IANA zone of an organisation (calendar windows are computed in it).
        grace: how long after a window's end it still accepts events (event time).
        watermark_key: the table key of an organisation's watermark row in this partition,
            ``{"event_time": ISO 8601 UTC, "offset": source offset}``.

    The watermark is kept per organisation (and partition), not per partition alone: tenants
    share partitions, and one tenant's clock running ahead must not make another tenant's
    events late.
    """

    zone_of: Callable[[str], ZoneInfo]
    grace: timedelta
    watermark_key: Callable[[str], str]


def fold_batch(
    get: Lookup,
    batch: Sequence[tuple[int, BookingEvent]],
    windows: WindowPolicy | None = None,
) -> BatchResult:
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

    Event-time windows (when ``windows`` is given) are written with the month rows and follow
    the same ``offset`` rule. An organisation's watermark (greatest ``occurred_at`` of its
    events folded from this partition) is read once, advanced event by event, and written
    last: a crash that loses it leaves an older watermark, under which a redelivered event can
    only look *less* late, so no event that was on time is ever dropped from a window by a
    redelivery.
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

    late: dict[int, list[WindowGrain]] = {}
    marks: dict[str, datetime | None] = {}
    marks_start: dict[str, datetime | None] = {}

    def watermark_of(org: str) -> datetime | None:
        if org not in marks:
            assert windows is not None
            mark = get(windows.watermark_key(org))
            marks[org] = marks_start[org] = (
                None if mark is None else datetime.fromisoformat(mark["event_time"])
            )
        return marks[org]

    def apply(
        key: str, grain: Grain | WindowGrain, period: str, offset: int, ev: BookingEvent
    ) -> None:
        row = load(key)
        if grain != "day" and row is not None and row["offset"] >= offset:
            return  # this row already holds the event (written before a crash)
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

    for index, (offset, ev) in enumerate(batch):
        day_period = period_of(ev.service_date, "day")
        day_key = table_key(ev.organization_id, ev.venue_id, "day", day_period)
        day_row = load(day_key)
        if day_key not in id_sets:
            id_sets[day_key] = set(day_row["event_ids"]) if day_row else set()
        if ev.event_id in id_sets[day_key]:
            outcomes.append("duplicate")
            continue
        id_sets[day_key].add(ev.event_id)
        missed: list[WindowGrain] = []
        if windows is not None:
            watermark = watermark_of(ev.organization_id)
            for w in windows_of(ev.occurred_at, windows.zone_of(ev.organization_id)):
                if is_closed(w, watermark, windows.grace):
                    missed.append(w.grain)
                    continue
                key = table_key(ev.organization_id, ev.venue_id, w.grain, w.label)
                apply(key, w.grain, w.label, offset, ev)
            if watermark is None or ev.occurred_at > watermark:
                marks[ev.organization_id] = ev.occurred_at
        for grain in ("month", "day"):
            period = period_of(ev.service_date, grain)
            apply(
                table_key(ev.organization_id, ev.venue_id, grain, period), grain, period, offset, ev
            )
        if missed:
            late[index] = missed
            outcomes.append("late")
        else:
            outcomes.append("counted")
    ordered = sorted(changes, key=lambda k: changes[k].grain == "day")
    writes = [(k, rows[k]) for k in ordered]
    if windows is not None:
        for org, mark in marks.items():
            if mark is not None and mark != marks_start[org]:
                mark_row = {"event_time": mark.isoformat(), "offset": batch[-1][0]}
                writes.append((windows.watermark_key(org), mark_row))
    return BatchResult(writes, outcomes, list(changes.values()), late)
