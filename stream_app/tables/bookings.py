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
from stream_app.tables.limits import ROW_LIMIT
from stream_app.tables.windows import WindowGrain, window_end, windows_of

Grain = Literal["day", "month"]
GRAINS: tuple[Grain, ...] = ("day", "month")


def period_of(service_date: date, grain: Grain) -> str:
    """The period label of a local date: ``YYYY-MM-DD`` for a day, ``YYYY-MM`` for a month."""
    return service_date.isoformat() if grain == "day" else service_date.isoformat()[:7]


def table_key(organization_id: str, venue_id: str, grain: Grain | WindowGrain, period: str) -> str:
    """Key of a venue-period row: ``organization_id/venue_id/grain/period``."""
    return f"{organization_id}/{venue_id}/{grain}/{period}"


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

    def copy(self) -> VenueTotals:
        """An independent copy (the currency dicts are copied too)."""
        return VenueTotals(
            self.bookings,
            self.cancellations,
            dict(self.booked_minor),
            dict(self.cancelled_minor),
            self.lead_time_days_sum,
            self.lead_time_bookings,
        )

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
        final: the row is an event-time window the batch closed: ``new`` is its final
            value (see :func:`fold_batch`).
    """

    organization_id: str
    venue_id: str
    grain: Grain | WindowGrain
    period: str
    old: VenueTotals
    new: VenueTotals
    event_time: datetime
    events: int
    final: bool = False


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
        out.add(t)
    return out


@dataclass(slots=True)
class BatchResult:
    """What a batch does to the table.

    Attributes:
        writes: ``(key, value)`` to write, in this order: the rows, then the organisations'
            watermark rows (see :func:`fold_batch`).
        outcomes: per input event, ``counted``, ``late`` (counted in the service-date totals
            but too late for at least one event-time window) or ``redelivered`` (every row
            already held it: a message delivered again at its own offset).
        changes: the changed rows, for ``realtime-metrics-updates``; closed windows last,
            with ``final=True``.
        late: per late event (index into the batch), the window grains it missed.
        opened: ``(organization_id, key, closes at)`` of the window rows the batch wrote
            that are still open (for :class:`stream_app.tables.closing.OpenWindows`).
        refused: ``(input offset, row key)`` of the events not folded because they would
            take a sum of that row past :data:`stream_app.tables.limits.ROW_LIMIT` (none of
            their rows changed; they have no outcome).
    """

    writes: list[tuple[str, dict[str, Any]]]
    outcomes: list[str]
    changes: list[RowChange]
    late: dict[int, list[WindowGrain]] = field(default_factory=dict)
    opened: list[tuple[str, str, datetime]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


Closing = Callable[[str, datetime], Iterable[str]]
"""``(organization_id, new watermark)`` → keys of the open window rows the watermark closes
(each key once; see :class:`stream_app.tables.closing.OpenWindows`)."""


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """How a batch folds event-time windows (None in :func:`fold_batch`: no windows).

    Attributes:
        zone_of: the IANA zone of an organisation (calendar windows are computed in it).
        grace: how long after a window's end it still accepts events (event time).
        watermark_key: the table key of an organisation's watermark row in this partition,
            ``{"event_time": ISO 8601 UTC, "o": input offset}``.
        closing: the open windows a new watermark closes (None: windows never report a
            final value).

    The watermark is kept per organisation (and partition), not per partition alone: tenants
    share partitions, and one tenant's clock running ahead must not make another tenant's
    events late.
    """

    zone_of: Callable[[str], ZoneInfo]
    grace: timedelta
    watermark_key: Callable[[str], str]
    closing: Closing | None = None


_DAY_UNIONS = frozenset({"event_week", "event_month"})
"""Window grains that are unions of local days: an event late for its day is in neither."""

_RowId = tuple[str, str, Grain | WindowGrain, str]
"""``(organization_id, venue_id, grain, period)`` of a row."""


@dataclass(slots=True)
class _Row:
    """A row being changed by a batch: its totals, the input offset it has applied up to."""

    ident: _RowId
    applied: int
    old: VenueTotals
    totals: VenueTotals
    final: bool
    offset: int = -1
    event_time: datetime | None = None
    events: int = 0
    closing: bool = False


def _load(get: Lookup, key: str, ident: _RowId) -> _Row:
    value = get(key)
    if not value:
        return _Row(ident, -1, VenueTotals(), VenueTotals(), False)
    old = row_totals(value)
    return _Row(
        ident,
        int(value.get("o", -1)),
        old,
        old.copy(),
        bool(value.get("final")),
    )


def _top(totals: VenueTotals) -> int:
    """The largest sum of minor units of ``totals`` (0 when none)."""
    return max((*totals.booked_minor.values(), *totals.cancelled_minor.values()), default=0)


def _passes(targets: list[_Row], created: bool, currency: str, amount: int) -> _Row | None:
    """The first of ``targets`` whose sum in ``currency`` adding ``amount`` would take past
    :data:`ROW_LIMIT` (booked value for a booking, cancelled value for a cancellation)."""
    limit = ROW_LIMIT - amount
    for r in targets:
        sums = r.totals.booked_minor if created else r.totals.cancelled_minor
        if sums.get(currency, 0) > limit:
            return r
    return None


def _closing_time(changed: datetime | None, mark: datetime | None) -> datetime:
    """Event time of a final value: the row's latest event of the batch, else the
    watermark that closed it."""
    out = changed or mark
    assert out is not None
    return out


def fold_batch(
    get: Lookup,
    batch: Sequence[tuple[int, BookingEvent]],
    windows: WindowPolicy | None = None,
) -> BatchResult:
    """Fold a batch of one partition's events (ascending offsets) into the venue rows,
    exactly once per row.

    Args:
        get: reads the current value of a row of the partition.
        batch: ``(source offset, event)`` pairs of one source partition, ascending offsets.
        windows: the event-time window policy, or None for the service-date rows only.

    Rows: ``{"totals": VenueTotals JSON, "o": the input offset applied up to}`` (window rows
    gain ``"final": true`` when they close). Per event, its service ``day`` and ``month``
    rows and its windows (``event_hour``, ``event_day_utc``, ``event_day``, ``event_week``,
    ``event_month``): seven rows, each read once and written once per batch, whatever the
    number of events that touch it.

    Exactly once: the table is co-partitioned with its input, so each row is fed by one
    input partition, in offset order; an event at or below a row's ``o`` is already in it
    and is not applied to that row again. That recognises a message delivered again at its
    own offset after a crash or a rebalance whatever subset of rows survived; a message
    *re-sent* at a new offset is recognised before the fold
    (:mod:`stream_app.tables.dedupe`). Rows are constant-size: no row lists event ids.

    Lateness (:mod:`stream_app.tables.windows`): an event whose window is closed by its
    organisation's watermark (``watermark >= end + grace``) is not folded into it; an event
    late for its local day is in neither its week nor its month (they are unions of days).
    A row that already holds the event is left alone without asking. The watermark rows come
    last in :attr:`BatchResult.writes`: the caller writes them in order to one changelog
    partition, so a crash that keeps a watermark keeps every row written before it, and a
    replayed event never meets a watermark newer than the rows it was folded with.

    Final values: when the watermark of an organisation moves, ``windows.closing`` names
    the open windows it closes; each is written with ``"final": true`` and reported as a
    change with ``final=True`` (its value can no longer change).
    """
    rows: dict[str, _Row] = {}
    outcomes: list[str] = []
    late: dict[int, list[WindowGrain]] = {}
    marks: dict[str, tuple[datetime | None, int]] = {}
    marks_start: dict[str, datetime | None] = {}
    zones: dict[str, ZoneInfo] = {}

    def row(key: str, ident: _RowId) -> _Row:
        r = rows.get(key)
        if r is None:
            r = rows[key] = _load(get, key, ident)
        return r

    def watermark_of(org: str) -> datetime | None:
        if org not in marks:
            assert windows is not None
            mark = get(windows.watermark_key(org))
            value = None if mark is None else datetime.fromisoformat(mark["event_time"])
            marks[org] = (value, -1)
            marks_start[org] = value
        return marks[org][0]

    # the hot loop: seven rows per event, so the fold of one event into a row is written out
    # here (fold_booking's arithmetic) rather than called; rows are looked up in the batch's
    # dict first and loaded (one read) on a miss. No sum of minor units of the batch's rows
    # is above the largest loaded (``top``) plus the amounts folded so far (``spent``), so
    # the check against ROW_LIMIT is one comparison per event until that bound comes near
    # it (then :func:`_passes` looks at the event's rows).
    lookup = rows.get
    grace = windows.grace if windows is not None else timedelta(0)
    refused: list[tuple[int, str]] = []
    top = spent = 0
    for index, (offset, ev) in enumerate(batch):
        org, venue, when = ev.organization_id, ev.venue_id, ev.occurred_at
        created = ev.event_type == "booking_created"
        currency, amount, lead = ev.currency, ev.amount_minor, ev.lead_time_days
        day = ev.service_date.isoformat()
        slots: list[tuple[Grain | WindowGrain, str, datetime | None]] = [
            ("day", day, None),
            ("month", day[:7], None),
        ]
        watermark: datetime | None = None
        if windows is not None:
            watermark = watermark_of(org)
            zone = zones.get(org)
            if zone is None:
                zone = zones[org] = windows.zone_of(org)
            slots += [(w.grain, w.label, w.end) for w in windows_of(when, zone)]
        targets: list[_Row] = []  # the rows the event is folded into
        missed: list[WindowGrain] = []
        for slot_grain, period, end in slots:
            key = f"{org}/{venue}/{slot_grain}/{period}"
            r = lookup(key)
            if r is None:
                r = rows[key] = _load(get, key, (org, venue, slot_grain, period))
                top = max(top, _top(r.totals))
            if offset <= r.applied:
                continue
            if end is not None and (
                (missed and slot_grain in _DAY_UNIONS and "event_day" in missed)
                or r.final
                or (watermark is not None and watermark >= end + grace)
            ):
                missed.append(slot_grain)  # type: ignore[arg-type]
                continue
            targets.append(r)
        if top + spent + amount > ROW_LIMIT:
            over = _passes(targets, created, currency, amount)
            if over is not None:
                refused.append((offset, "/".join(over.ident)))
                continue
        spent += amount
        for r in targets:
            t = r.totals
            if created:
                t.bookings += 1
                booked = t.booked_minor
                booked[currency] = booked.get(currency, 0) + amount
                if lead is not None:
                    t.lead_time_days_sum += lead
                    t.lead_time_bookings += 1
            else:
                t.cancellations += 1
                cancelled = t.cancelled_minor
                cancelled[currency] = cancelled.get(currency, 0) + amount
            r.offset = offset
            r.events += 1
            if r.event_time is None or when > r.event_time:
                r.event_time = when
        if windows is not None:
            marks[org] = (when if watermark is None or when > watermark else watermark, offset)
        if missed:
            late[index] = missed
            outcomes.append("late")
        elif targets:
            outcomes.append("counted")
        else:
            outcomes.append("redelivered")

    closed: list[str] = []
    if windows is not None and windows.closing is not None:
        for org, (mark, _) in marks.items():
            if mark is not None and mark != marks_start[org]:
                for key in windows.closing(org, mark):
                    org_, venue, grain, period = key.split("/", 3)
                    r = row(key, (org_, venue, grain, period))  # type: ignore[arg-type]
                    if not r.final:
                        r.closing = True
                        closed.append(key)

    writes: list[tuple[str, dict[str, Any]]] = []
    changes: list[RowChange] = []
    opened: list[tuple[str, str, datetime]] = []
    finals: list[RowChange] = []
    for key, r in rows.items():
        if r.events == 0 and not r.closing:
            continue
        org, venue, grain, period = r.ident
        closes_at: datetime | None = None
        if (
            r.events
            and not r.closing
            and not r.final
            and grain not in ("day", "month")
            and windows is not None
            and windows.closing is not None
        ):
            closes_at = window_end(grain, period, windows.zone_of(org)) + windows.grace
            mark = marks[org][0]
            if mark is not None and mark >= closes_at:
                r.closing = True  # opened and closed by the same batch
        value: dict[str, Any] = {"totals": r.totals.to_json(), "o": max(r.offset, r.applied)}
        if r.closing:
            value["final"] = True
        writes.append((key, value))
        at = r.event_time
        if r.events:
            assert at is not None
            changes.append(RowChange(org, venue, grain, period, r.old, r.totals, at, r.events))
        if r.closing:
            finals.append(
                RowChange(
                    org,
                    venue,
                    grain,
                    period,
                    r.totals,
                    r.totals,
                    _closing_time(at, marks[org][0]),
                    0,
                    final=True,
                )
            )
        elif closes_at is not None:
            opened.append((org, key, closes_at))
    if windows is not None:
        for org, (mark, mark_offset) in marks.items():
            if mark is not None and mark != marks_start[org]:
                writes.append(
                    (windows.watermark_key(org), {"event_time": mark.isoformat(), "o": mark_offset})
                )
    return BatchResult(writes, outcomes, changes + finals, late, opened, refused)
