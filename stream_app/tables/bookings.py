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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.windows import WindowGrain, is_closed, window_of, windows_of

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
        lead_time_days_sum: the sum of ``lead_time_days`` (days from booking to service date)
            over the bookings that state it.
        lead_time_bookings: how many bookings state a lead time. The average lead time of
            the period's bookings is ``lead_time_days_sum ÷ lead_time_bookings``
            (:attr:`average_lead_time_milli_days`); a cancellation does not change it.
    """

    bookings: int = 0
    cancellations: int = 0
    booked_minor: dict[str, int] = field(default_factory=dict)
    cancelled_minor: dict[str, int] = field(default_factory=dict)
    lead_time_days_sum: int = 0
    lead_time_bookings: int = 0

    @property
    def average_lead_time_milli_days(self) -> int | None:
        """Average lead time of the bookings that state one, in thousandths of a day rounded
        down; None when none does."""
        if not self.lead_time_bookings:
            return None
        return self.lead_time_days_sum * 1000 // self.lead_time_bookings

    @property
    def revenue_minor(self) -> dict[str, int]:
        """Booked minus cancelled value, per currency (sorted by code), in minor units."""
        booked, cancelled = self.booked_minor, self.cancelled_minor
        if len(booked) <= 1 and len(cancelled) <= 1:  # the common case: one currency
            if not cancelled:
                return dict(booked)
            if not booked:
                return {c: -v for c, v in cancelled.items()}
            if booked.keys() == cancelled.keys():
                ((c, v),) = booked.items()
                return {c: v - cancelled[c]}
        currencies = sorted(set(booked) | set(cancelled))
        return {c: booked.get(c, 0) - cancelled.get(c, 0) for c in currencies}

    def add(self, other: VenueTotals, sign: int = 1) -> None:
        """Add ``other`` (``sign=1``) or take it away (``sign=-1``), in place; a currency
        whose booked or cancelled value returns to 0 keeps its 0 entry."""
        self.bookings += sign * other.bookings
        self.cancellations += sign * other.cancellations
        self.lead_time_days_sum += sign * other.lead_time_days_sum
        self.lead_time_bookings += sign * other.lead_time_bookings
        for c, v in other.booked_minor.items():
            self.booked_minor[c] = self.booked_minor.get(c, 0) + sign * v
        for c, v in other.cancelled_minor.items():
            self.cancelled_minor[c] = self.cancelled_minor.get(c, 0) + sign * v

    def to_json(self) -> dict[str, Any]:
        """The table value: a JSON object with the six fields (integers only)."""
        return {
            "bookings": self.bookings,
            "cancellations": self.cancellations,
            "booked_minor": dict(self.booked_minor),
            "cancelled_minor": dict(self.cancelled_minor),
            "lead_time_days_sum": self.lead_time_days_sum,
            "lead_time_bookings": self.lead_time_bookings,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> VenueTotals:
        """Rebuild from :meth:`to_json` output; ``None`` (no row yet) gives zeros. Rows
        written before the lead-time fields existed read them as 0."""
        if not value:
            return cls()
        return cls(
            bookings=int(value["bookings"]),
            cancellations=int(value["cancellations"]),
            booked_minor={k: int(v) for k, v in value["booked_minor"].items()},
            cancelled_minor={k: int(v) for k, v in value["cancelled_minor"].items()},
            lead_time_days_sum=int(value.get("lead_time_days_sum", 0)),
            lead_time_bookings=int(value.get("lead_time_bookings", 0)),
        )


def fold_booking(totals: VenueTotals, event: BookingEvent) -> None:
    """Apply one booking event to a venue-period's totals, in place.

    The fold is commutative: the totals do not depend on the order of events, so a
    cancellation that arrives before its booking gives the same month-end figures.
    """
    if event.event_type == "booking_created":
        totals.bookings += 1
        booked = totals.booked_minor
        booked[event.currency] = booked.get(event.currency, 0) + event.amount_minor
        if event.lead_time_days is not None:
            totals.lead_time_days_sum += event.lead_time_days
            totals.lead_time_bookings += 1
    else:
        totals.cancellations += 1
        cancelled = totals.cancelled_minor
        cancelled[event.currency] = cancelled.get(event.currency, 0) + event.amount_minor


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


ROLLUP_GRAINS: frozenset[str] = frozenset({"month", "event_week", "event_month"})
"""Grains whose rows are roll-ups: ``{"days": {day label: totals JSON}, "totals": their sum}``."""


def row_totals(row: dict[str, Any] | None) -> VenueTotals:
    """The totals a row of any grain holds (a roll-up row is the sum of its day entries,
    stored beside them in ``totals``; rows written before that field existed are summed)."""
    if not row:
        return VenueTotals()
    if "totals" in row:
        return VenueTotals.from_json(row["totals"])
    return sum_totals(VenueTotals.from_json(v) for v in row["days"].values())


def sum_totals(parts: Iterable[VenueTotals]) -> VenueTotals:
    """The sum of ``parts`` (counts added, amounts added per currency)."""
    out = VenueTotals()
    for t in parts:
        out.bookings += t.bookings
        out.cancellations += t.cancellations
        for c, v in t.booked_minor.items():
            out.booked_minor[c] = out.booked_minor.get(c, 0) + v
        for c, v in t.cancelled_minor.items():
            out.cancelled_minor[c] = out.cancelled_minor.get(c, 0) + v
        out.lead_time_days_sum += t.lead_time_days_sum
        out.lead_time_bookings += t.lead_time_bookings
    return out


@dataclass(slots=True)
class BatchResult:
    """What a batch does to the table.

    Attributes:
        writes: ``(key, value)`` to write; any order (see :func:`fold_batch`).
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
            ``{"event_time": ISO 8601 UTC}``.

    The watermark is kept per organisation (and partition), not per partition alone: tenants
    share partitions, and one tenant's clock running ahead must not make another tenant's
    events late.
    """

    zone_of: Callable[[str], ZoneInfo]
    grace: timedelta
    watermark_key: Callable[[str], str]


_ID_WINDOWS: tuple[WindowGrain, ...] = ("event_hour", "event_day_utc", "event_day")

_RowId = tuple[str, str, Grain | WindowGrain, str]
"""``(organization_id, venue_id, grain, period)`` of a row."""


@dataclass(slots=True)
class _IdRow:
    """An id row being changed by a batch: mutable totals and ids, serialised once at the end."""

    ident: _RowId
    old: VenueTotals
    totals: VenueTotals
    ids: list[str]
    offsets: list[int]
    event_time: datetime
    events: int = 0

    def add(self, ev: BookingEvent, offset: int) -> None:
        fold_booking(self.totals, ev)
        self.ids.append(ev.event_id)
        self.offsets.append(offset)
        self.events += 1
        if ev.occurred_at > self.event_time:
            self.event_time = ev.occurred_at


@dataclass(slots=True)
class _RollupTouch:
    """A roll-up row touched by a batch: which day entries to copy from which id rows."""

    ident: _RowId
    sources: dict[str, str]
    event_time: datetime
    events: int = 0


def _id_offsets(row: dict[str, Any] | None) -> dict[str, int]:
    """``{event_id: source offset}`` of an id row (offset -1 for rows written without them)."""
    if not row:
        return {}
    ids = row["event_ids"]
    offsets = row.get("offsets") or [-1] * len(ids)
    return dict(zip(ids, offsets, strict=True))


def fold_batch(
    get: Lookup,
    batch: Sequence[tuple[int, BookingEvent]],
    windows: WindowPolicy | None = None,
    committed: int | None = None,
) -> BatchResult:
    """Fold a batch of one partition's events into the venue rows, exactly once.

    Args:
        get: reads the current value of a row.
        batch: ``(source offset, event)`` pairs of one source partition.
        windows: the event-time window policy, or None for the service-date rows only.
        committed: the partition's committed offset, if known: no message below it is
            delivered again, so the window rows written by this batch keep only the ids of
            events at or above it (see below).

    Rows:

    - *id rows* (service ``day``; windows ``event_hour``, ``event_day_utc``, ``event_day``):
      ``{"totals": VenueTotals JSON, "event_ids": [...], "offsets": [...]}``, the id and
      source offset of every event folded into the row. An event is folded into an id row
      unless the row already lists its id;
    - *roll-up rows* (service ``month``; windows ``event_week``, ``event_month``):
      ``{"days": {day label: totals JSON}, "totals": totals JSON}``, a copy of each of their
      day rows' totals, refreshed at the end of the batch from every day row an event of the
      batch passed through (also a duplicate), and their sum (:func:`row_totals`), kept in
      the same record: a changed entry's old copy is taken away and its new copy added, so a
      batch does not sum a month's days.

    Exactly once with at-least-once input, in any order and after a crash at any point: each
    id row decides alone whether it holds an event, so no write order, offset order or
    cross-row invariant is needed; a crash that lost some writes of a batch is repaired when
    the batch is redelivered (the lost id rows fold their events again, and the roll-ups copy
    the day rows again). A duplicate *message* (same ``event_id``) is recognised by its id.
    Event-time windows follow the lateness rule of :mod:`stream_app.tables.windows`; a day
    window closed for an event keeps the event out of its week and month too (they are sums
    of days). The watermark of an organisation only grows and is written after the rows of its
    batch (one producer writes a changelog partition in order), so a crash keeps it no newer
    than the rows; lateness never affects the service-date totals.

    Bounded window rows: a service day row keeps every id (a message re-sent by a producer can
    come at any time, at a new offset), but the window rows of the current hour and day would
    grow with every event and be rewritten whole on every batch. A message is delivered again
    only from the committed offset on (the worker flushes its changelog before it commits), so
    a window row needs the ids of events at or above ``committed`` only, to recognise a
    redelivery; it drops the others when it is written. An event whose id its service day row
    already holds *at another offset* is a re-sent message: it is kept out of the windows too
    (its first message was counted there, or was late for them). At the same offset it is a
    redelivery after a crash, and each window row decides by its own ids, as above.

    Cost: every row is read at most once and written at most once per batch, and a roll-up's
    totals change by the entries the batch changed, not by a sum of all its days.
    """
    rows: dict[str, dict[str, Any] | None] = {}
    id_sets: dict[str, dict[str, int]] = {}
    work: dict[str, _IdRow] = {}
    rollups: dict[str, _RollupTouch] = {}
    outcomes: list[str] = []
    late: dict[int, list[WindowGrain]] = {}
    marks: dict[str, datetime | None] = {}
    marks_start: dict[str, datetime | None] = {}

    def load(key: str) -> dict[str, Any] | None:
        if key not in rows:
            rows[key] = get(key)
        return rows[key]

    def offsets_of(key: str) -> dict[str, int]:
        ids = id_sets.get(key)
        if ids is None:
            ids = id_sets[key] = _id_offsets(load(key))
        return ids

    def holds(key: str, event_id: str) -> bool:
        return event_id in offsets_of(key)

    def fold_into(key: str, ev: BookingEvent, offset: int, ident: _RowId) -> None:
        row = work.get(key)
        if row is None:
            original = load(key)
            old = row_totals(original)
            current = VenueTotals.from_json(original["totals"]) if original else VenueTotals()
            known = offsets_of(key)
            row = work[key] = _IdRow(
                ident, old, current, list(known), list(known.values()), ev.occurred_at
            )
        row.add(ev, offset)
        id_sets[key][ev.event_id] = offset

    def touch(up_key: str, label: str, source_key: str, ev: BookingEvent, ident: _RowId) -> None:
        up = rollups.get(up_key)
        if up is None:
            up = rollups[up_key] = _RollupTouch(ident, {}, ev.occurred_at)
        up.sources[label] = source_key
        up.events += 1
        if ev.occurred_at > up.event_time:
            up.event_time = ev.occurred_at

    def watermark_of(org: str) -> datetime | None:
        if org not in marks:
            assert windows is not None
            mark = get(windows.watermark_key(org))
            value = None if mark is None else datetime.fromisoformat(mark["event_time"])
            marks[org] = marks_start[org] = value
        return marks[org]

    for index, (offset, ev) in enumerate(batch):
        org, venue = ev.organization_id, ev.venue_id
        day = period_of(ev.service_date, "day")
        day_key = table_key(org, venue, "day", day)
        month = period_of(ev.service_date, "month")
        first_offset = offsets_of(day_key).get(ev.event_id)
        duplicate = first_offset is not None
        resent = duplicate and first_offset not in (offset, -1)
        if not duplicate:
            fold_into(day_key, ev, offset, (org, venue, "day", day))
        touch(table_key(org, venue, "month", month), day, day_key, ev, (org, venue, "month", month))
        missed: list[WindowGrain] = []
        if windows is not None:
            watermark = watermark_of(org)
            zone = windows.zone_of(org)
            for w in windows_of(ev.occurred_at, zone):
                if w.grain not in _ID_WINDOWS:
                    continue
                key = table_key(org, venue, w.grain, w.label)
                if not resent and not holds(key, ev.event_id):
                    if is_closed(w, watermark, windows.grace):
                        if not duplicate:
                            missed.append(w.grain)
                    else:
                        fold_into(key, ev, offset, (org, venue, w.grain, w.label))
                if w.grain == "event_day":
                    for grain in ("event_week", "event_month"):
                        wide = window_of(grain, ev.occurred_at, zone)
                        up_key = table_key(org, venue, wide.grain, wide.label)
                        touch(up_key, w.label, key, ev, (org, venue, wide.grain, wide.label))
            if "event_day" in missed:
                # the week and month are sums of local days: a day too late is missed there too
                missed.extend(("event_week", "event_month"))
            if watermark is None or ev.occurred_at > watermark:
                marks[org] = ev.occurred_at
        if duplicate:
            outcomes.append("duplicate")
        elif missed:
            late[index] = missed
            outcomes.append("late")
        else:
            outcomes.append("counted")

    writes: list[tuple[str, dict[str, Any]]] = []
    changes: list[RowChange] = []
    for key, row in work.items():
        org, venue, grain, period = row.ident
        ids, offsets = row.ids, row.offsets
        if committed is not None and grain != "day":
            kept = [i for i, o in enumerate(offsets) if o >= committed]
            ids, offsets = [ids[i] for i in kept], [offsets[i] for i in kept]
        writes.append((key, {"totals": row.totals.to_json(), "event_ids": ids, "offsets": offsets}))
        changes.append(
            RowChange(org, venue, grain, period, row.old, row.totals, row.event_time, row.events)
        )
    for up_key, touched in rollups.items():
        up = load(up_key)
        days = dict(up["days"]) if up else {}
        old = row_totals(up)
        new = VenueTotals.from_json(old.to_json())
        moved = False
        for label, source_key in touched.sources.items():
            source = work.get(source_key)
            if source is not None:
                copy: dict[str, Any] | None = source.totals.to_json()
            else:
                original = load(source_key)
                copy = None if original is None else original["totals"]
            if copy is None or days.get(label) == copy:
                continue
            if label in days:
                new.add(VenueTotals.from_json(days[label]), -1)
            new.add(VenueTotals.from_json(copy))
            days[label] = copy
            moved = True
        if not moved:
            continue
        writes.append((up_key, {"days": days, "totals": new.to_json()}))
        org, venue, grain, period = touched.ident
        changes.append(
            RowChange(org, venue, grain, period, old, new, touched.event_time, touched.events)
        )
    if windows is not None:
        for org, mark in marks.items():
            if mark is not None and mark != marks_start[org]:
                writes.append((windows.watermark_key(org), {"event_time": mark.isoformat()}))
    return BatchResult(writes, outcomes, changes, late)
