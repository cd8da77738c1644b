"""Event-time windows: which window an event's ``occurred_at`` falls in, and when it closes.

Five window grains, all by **event time** (``occurred_at``, never arrival time):

========================  ===================================================  ==================
grain                     window                                               label
========================  ===================================================  ==================
``event_hour``            tumbling, 3,600 s, aligned to the UTC epoch          ``2026-11-29T10``
``event_day_utc``         tumbling, 86,400 s, aligned to the UTC epoch          ``2026-11-29``
``event_day``             calendar day in the organisation's IANA zone          ``2026-11-29``
``event_week``            ISO 8601 week (Monday–Sunday) in the zone            ``2026-W48``
``event_month``           calendar month in the zone                           ``2026-11``
========================  ===================================================  ==================

Calendar windows are computed in the zone with :mod:`zoneinfo`, so a day across a
daylight-saving change lasts 23 or 25 hours and a month is a calendar month, not 30 days.
A local midnight that does not exist (a zone that springs forward at 00:00) starts the day at
the first instant that does exist. Tumbling windows have a fixed length in seconds and ignore
the zone (hours and UTC days are the same everywhere).

``event_week`` and ``event_month`` are stored as roll-ups of their ``event_day`` windows (a
calendar week or month is a union of local days), so an event late for its day window is in
neither its week nor its month.

Lateness (the grace period): the *watermark* of an organisation in a partition is the
greatest ``occurred_at`` of its events folded from that partition so far. A window is
*closed* once ``watermark >= window end + grace``; an event
whose window of some grain is closed is *late for that grain*: it is not folded into that
window (the window's published figure is final) but it still counts in its open windows of
other grains and in the service-date totals of :mod:`stream_app.tables.bookings`, which are
not event-time windows and stay exact. Every late event is copied to the ``late-events`` topic
with the grains it missed, and counted (``events_outcome_total{outcome="late"}`` and
``late_events_total{grain}``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from stream_app.errors import WeddingError
from stream_app.schemas.bookings import FIRST_SERVICE_YEAR, LAST_SERVICE_YEAR

WindowGrain = Literal["event_hour", "event_day_utc", "event_day", "event_week", "event_month"]
WINDOW_GRAINS: tuple[WindowGrain, ...] = (
    "event_hour",
    "event_day_utc",
    "event_day",
    "event_week",
    "event_month",
)

_HOUR_S = 3600
_DAY_S = 86400


@dataclass(frozen=True, slots=True)
class Window:
    """One window: its grain, label and ``[start, end)`` in UTC."""

    grain: WindowGrain
    label: str
    start: datetime
    end: datetime


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local ``day`` in ``zone``, in UTC."""
    naive = datetime.combine(day, time(0))
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    # a midnight skipped by a spring-forward transition maps to the instant of the
    # transition itself (fold=0 reads it with the earlier offset), which is the day's
    # first existing instant; check it did not land on the previous local day
    if instant.astimezone(zone).date() < day:  # pragma: no cover - no such zone rule today
        instant = instant + timedelta(hours=1)
    return instant


def window_of(grain: WindowGrain, at: datetime, zone: ZoneInfo) -> Window:
    """The ``grain`` window containing the instant ``at`` (timezone-aware).

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("at: a timezone-aware datetime is required")
    if grain in ("event_hour", "event_day_utc"):
        size = _HOUR_S if grain == "event_hour" else _DAY_S
        ts = math.floor(at.timestamp()) // size * size
        start = datetime.fromtimestamp(ts, UTC)
        label = start.strftime("%Y-%m-%dT%H" if grain == "event_hour" else "%Y-%m-%d")
        return Window(grain, label, start, start + timedelta(seconds=size))
    local = at.astimezone(zone).date()
    if grain == "event_day":
        first, nxt = local, local + timedelta(days=1)
        label = local.isoformat()
    elif grain == "event_week":
        first = local - timedelta(days=local.weekday())
        nxt = first + timedelta(days=7)
        year, week, _ = local.isocalendar()
        label = f"{year}-W{week:02d}"
    else:
        first = local.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        label = first.isoformat()[:7]
    return Window(grain, label, _local_midnight(first, zone), _local_midnight(nxt, zone))


_BUCKET_S = 900
"""Windows are computed once per 15 minutes of UTC time and zone: every window boundary of
today's zones (whole hours, local midnights at offsets in multiples of 15 minutes) falls on
such a bucket's edge. A bucket some boundary cuts (a historical offset such as Paris's
+00:09:21 before 1911) is computed per instant instead."""


@functools.lru_cache(maxsize=8192)
def _bucket_windows(bucket: int, zone: ZoneInfo) -> tuple[Window, ...] | None:
    """The windows of every grain around UTC bucket ``bucket`` (``ts // _BUCKET_S``), or
    None when a window boundary cuts the bucket."""
    start = datetime.fromtimestamp(bucket * _BUCKET_S, UTC)
    end = start + timedelta(seconds=_BUCKET_S)
    out = tuple(window_of(g, start, zone) for g in WINDOW_GRAINS)
    if all(w.start <= start and end <= w.end for w in out):
        return out
    return None


def windows_of(at: datetime, zone: ZoneInfo) -> list[Window]:
    """The window of every grain containing ``at``, in :data:`WINDOW_GRAINS` order.

    Raises:
        ValueError: ``at`` is naive.
    """
    if at.tzinfo is None:
        raise ValueError("at: a timezone-aware datetime is required")
    cached = _bucket_windows(math.floor(at.timestamp()) // _BUCKET_S, zone)
    if cached is not None:
        return list(cached)
    return [window_of(g, at, zone) for g in WINDOW_GRAINS]


def is_closed(window: Window, watermark: datetime | None, grace: timedelta) -> bool:
    """Whether ``window`` is closed: ``watermark >= window.end + grace`` (None: nothing seen)."""
    return watermark is not None and watermark >= window.end + grace


FIRST_YEAR, LAST_YEAR = FIRST_SERVICE_YEAR, LAST_SERVICE_YEAR
"""Years a window label may name (reads outside them are refused, not computed): the years
a booking's service date may be in (:mod:`stream_app.schemas.bookings`)."""


class LabelError(WeddingError, ValueError):
    """A bad window label or range; ``field`` is ``from``, ``to``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field


def window_labels(grain: WindowGrain, first: str, last: str, limit: int) -> list[str]:
    """The labels of consecutive ``grain`` windows from ``first`` to ``last`` inclusive.

    Labels as in the module table; a week label is ``YYYY-Www``.

    Raises:
        LabelError: a label is malformed or outside the years 1900–2099, ``last`` precedes
            ``first``, or there are more than ``limit`` windows (``field`` names which).
    """
    utc = ZoneInfo("UTC")
    bounds = []
    for field_name, label in (("from", first), ("to", last)):
        try:
            at = _parse_label(grain, label)
        except ValueError as exc:
            raise LabelError(field_name, f"{field_name}: {exc}") from None
        if not FIRST_YEAR <= at.year <= LAST_YEAR:
            raise LabelError(field_name, f"{field_name}: must be in {FIRST_YEAR}..{LAST_YEAR}")
        bounds.append(at)
    start, end = bounds
    if end < start:
        raise LabelError("to", "to must not be before from")
    out: list[str] = []
    cur = window_of(grain, start, utc)
    while cur.start <= end:
        out.append(cur.label)
        if len(out) > limit:
            raise LabelError("to", f"at most {limit} windows per request")
        cur = window_of(grain, cur.end, utc)
    return out


def _parse_label(grain: WindowGrain, label: str) -> datetime:
    """A UTC instant inside the window labelled ``label`` (labels read as UTC dates)."""
    try:
        if grain == "event_hour":
            if len(label) != 13 or label[10] != "T":
                raise ValueError
            return datetime.strptime(label, "%Y-%m-%dT%H").replace(tzinfo=UTC)
        if grain in ("event_day_utc", "event_day"):
            if len(label) != 10:
                raise ValueError
            return datetime.combine(date.fromisoformat(label), time(12), UTC)
        if grain == "event_week":
            year, week = label.split("-W")
            if len(week) != 2:
                raise ValueError
            return datetime.combine(date.fromisocalendar(int(year), int(week), 3), time(12), UTC)
        if len(label) != 7:
            raise ValueError
        return datetime.combine(date.fromisoformat(label + "-15"), time(12), UTC)
    except ValueError:
        shape = {
            "event_hour": "YYYY-MM-DDTHH",
            "event_day_utc": "YYYY-MM-DD",
            "event_day": "YYYY-MM-DD",
            "event_week": "YYYY-Www",
            "event_month": "YYYY-MM",
        }[grain]
        raise ValueError(f"{label!r} is not an {grain} label ({shape})") from None


@functools.lru_cache(maxsize=16_384)
def window_end(grain: WindowGrain, label: str, zone: ZoneInfo) -> datetime:
    """The end (exclusive, UTC-aware) of the window labelled ``label`` in ``zone``.

    Cached (a batch asks it once per window row it opens; the label parse and the zone
    arithmetic were about 5 % of the bookings fold's time in a py-spy profile).

    Raises:
        ValueError: ``label`` is not a label of ``grain``.
    """
    at = _parse_label(grain, label)
    if grain == "event_hour":
        return at + timedelta(hours=1)
    if grain == "event_day_utc":
        return datetime.combine(at.date() + timedelta(days=1), time(0), UTC)
    day = at.date()
    if grain == "event_day":
        return _local_midnight(day + timedelta(days=1), zone)
    if grain == "event_week":
        return _local_midnight(day - timedelta(days=day.weekday()) + timedelta(days=7), zone)
    return _local_midnight((day.replace(day=1) + timedelta(days=32)).replace(day=1), zone)
