"""Event-time windows: bounds across daylight-saving changes, ISO weeks, labels, lateness,
and the windowed fold (late events, redelivery after a crash)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from msgspec.structs import replace

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.bookings import (
    VenueTotals,
    WindowPolicy,
    fold_batch,
    row_totals,
    table_key,
)
from stream_app.tables.windows import (
    WINDOW_GRAINS,
    is_closed,
    window_labels,
    window_of,
    windows_of,
)
from tests.tables.model import BOOKING, data_rows

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+05:30
UTCZ = ZoneInfo("UTC")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def test_tumbling_hour_and_utc_day_ignore_the_zone() -> None:
    at = utc(2026, 3, 29, 0, 59, 59)
    h = window_of("event_hour", at, LONDON)
    assert (h.label, h.start, h.end) == ("2026-03-29T00", utc(2026, 3, 29, 0), utc(2026, 3, 29, 1))
    d = window_of("event_day_utc", at, KOLKATA)
    assert (d.label, d.start, d.end) == ("2026-03-29", utc(2026, 3, 29), utc(2026, 3, 30))


@pytest.mark.parametrize(
    ("zone", "day", "hours", "start"),
    [
        # clocks go forward 01:00 GMT -> 02:00 BST on 2026-03-29: a 23-hour day
        (LONDON, date(2026, 3, 29), 23, utc(2026, 3, 29, 0)),
        # back 02:00 BST -> 01:00 GMT on 2026-10-25: a 25-hour day starting at 23:00 UTC
        (LONDON, date(2026, 10, 25), 25, utc(2026, 10, 24, 23)),
        # New York: 2026-03-08 (EST -> EDT) and 2026-11-01 (EDT -> EST)
        (NEW_YORK, date(2026, 3, 8), 23, utc(2026, 3, 8, 5)),
        (NEW_YORK, date(2026, 11, 1), 25, utc(2026, 11, 1, 4)),
        # a 30-minute offset: the local day starts at 18:30 UTC the evening before
        (KOLKATA, date(2026, 7, 1), 24, utc(2026, 6, 30, 18, 30)),
    ],
)
def test_local_day_lasts_23_or_25_hours_across_dst(
    zone: ZoneInfo, day: date, hours: int, start: datetime
) -> None:
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=zone)
    w = window_of("event_day", noon, UTCZ if zone is UTCZ else zone)
    assert w.label == day.isoformat()
    assert w.start == start
    assert w.end - w.start == timedelta(hours=hours)


def test_local_month_and_iso_week_in_the_zone() -> None:
    # 2026-01-31 23:30 UTC is already 1 February in Kolkata (05:00) but not in New York
    at = utc(2026, 1, 31, 23, 30)
    assert window_of("event_month", at, KOLKATA).label == "2026-02"
    assert window_of("event_month", at, NEW_YORK).label == "2026-01"
    feb = window_of("event_month", at, KOLKATA)
    assert feb.start == utc(2026, 1, 31, 18, 30) and feb.end == utc(2026, 2, 28, 18, 30)
    # ISO weeks: 2026-12-31 (Thursday) and 2027-01-01 are in 2026-W53; 2027-01-04 is 2027-W01
    assert window_of("event_week", utc(2026, 12, 31, 12), UTCZ).label == "2026-W53"
    assert window_of("event_week", utc(2027, 1, 1, 12), UTCZ).label == "2026-W53"
    assert window_of("event_week", utc(2027, 1, 4, 12), UTCZ).label == "2027-W01"
    # the week containing London's autumn change has 7 × 24 + 1 hours
    w = window_of("event_week", utc(2026, 10, 25, 12), LONDON)
    assert w.label == "2026-W43"
    assert w.end - w.start == timedelta(hours=169)


def test_window_labels_and_their_errors() -> None:
    assert window_labels("event_hour", "2026-03-28T22", "2026-03-29T01", 100) == [
        "2026-03-28T22",
        "2026-03-28T23",
        "2026-03-29T00",
        "2026-03-29T01",
    ]
    assert window_labels("event_week", "2026-W52", "2027-W01", 100) == [
        "2026-W52",
        "2026-W53",
        "2027-W01",
    ]
    assert window_labels("event_month", "2026-11", "2027-02", 100) == [
        "2026-11",
        "2026-12",
        "2027-01",
        "2027-02",
    ]
    with pytest.raises(ValueError, match="event_hour label"):
        window_labels("event_hour", "2026-03-28", "2026-03-29T01", 100)
    with pytest.raises(ValueError, match="before"):
        window_labels("event_day", "2026-03-29", "2026-03-28", 100)
    with pytest.raises(ValueError, match="at most 3"):
        window_labels("event_day", "2026-03-01", "2026-03-28", 3)


def test_a_window_closes_at_end_plus_grace() -> None:
    w = window_of("event_hour", utc(2026, 5, 1, 10, 15), UTCZ)
    grace = timedelta(minutes=10)
    assert not is_closed(w, None, grace)
    assert not is_closed(w, utc(2026, 5, 1, 11, 9, 59), grace)
    assert is_closed(w, utc(2026, 5, 1, 11, 10), grace)


# --- the windowed fold -------------------------------------------------------------------

ORG = "org"


def ev(n: int, at: datetime, *, cancel: bool = False, amount: int = 100) -> BookingEvent:
    return replace(
        BOOKING,
        event_id=f"w-{n}-{'c' if cancel else 'b'}",
        organization_id=ORG,
        occurred_at=at,
        event_type="booking_cancelled" if cancel else "booking_created",
        booking_id=f"b-{n}",
        amount_minor=amount,
    )


POLICY = WindowPolicy(lambda org: LONDON, timedelta(minutes=30), lambda org: f"~watermark/0/{org}")


def fold(store: dict[str, Any], events: list[BookingEvent], first: int, keep: int | None = None):  # type: ignore[no-untyped-def]
    result = fold_batch(store.get, [(first + i, e) for i, e in enumerate(events)], POLICY)
    store.update(result.writes if keep is None else result.writes[:keep])
    return result


def row(store: dict[str, Any], grain: str, label: str) -> VenueTotals:
    return row_totals(store.get(table_key(ORG, "v1", grain, label)))  # type: ignore[arg-type]


# events in event-time order, then one 2 hours late (outside the 30-minute grace of its
# hour and of nothing else), and one 10 minutes late (inside the grace)
STREAM = [
    ev(1, utc(2026, 5, 1, 9, 5)),
    ev(2, utc(2026, 5, 1, 9, 50), amount=250),
    ev(3, utc(2026, 5, 1, 10, 20)),
    ev(4, utc(2026, 5, 1, 11, 40), amount=70),
    ev(5, utc(2026, 5, 1, 9, 30), amount=1000),  # late for hour 09 (closed at 10:30 + ...)
    ev(6, utc(2026, 5, 1, 11, 25), amount=5),  # 15 min behind the watermark: in its hour
]


def independent_hours() -> Counter[str]:
    """Bookings per UTC hour of the on-time events, worked out by hand from STREAM:
    event 5's hour (09) closed when the watermark (11:40) passed 10:00 + 30 min."""
    return Counter({"2026-05-01T09": 2, "2026-05-01T10": 1, "2026-05-01T11": 2})


def test_late_events_miss_only_their_closed_windows() -> None:
    store: dict[str, Any] = {}
    result = fold(store, STREAM, 0)
    assert result.outcomes == ["counted"] * 4 + ["late", "counted"]
    assert result.late == {4: ["event_hour"]}
    hours = {h: row(store, "event_hour", h).bookings for h in independent_hours()}
    assert hours == dict(independent_hours())
    # every on-time or late event is in the local day / week / month (the 10:30 BST day)
    assert row(store, "event_day", "2026-05-01").bookings == 6
    assert row(store, "event_month", "2026-05").booked_minor == {
        "EUR": 100 + 250 + 100 + 70 + 1000 + 5
    }
    assert row(store, "event_week", "2026-W18").bookings == 6
    # the service-date totals count every event, late or not
    assert row(store, "month", "2026-09").bookings == 6
    assert store["~watermark/0/org"]["event_time"] == "2026-05-01T11:40:00+00:00"


def test_a_day_too_late_is_missed_by_its_week_and_month_and_says_so() -> None:
    """The fresh user's case: 20 March, then 18 March. The 18th's day is closed, its week
    (W12) and month still open, but they are sums of local days: the event misses them too,
    and ``late`` lists them, so the late-events header and counter tell the truth."""
    store: dict[str, Any] = {}
    result = fold(store, [ev(1, utc(2026, 3, 20, 12)), ev(2, utc(2026, 3, 18, 12))], 0)
    assert result.outcomes == ["counted", "late"]
    assert result.late == {
        1: ["event_hour", "event_day_utc", "event_day", "event_week", "event_month"]
    }
    assert row(store, "event_week", "2026-W12").bookings == 1
    assert row(store, "event_month", "2026-03").bookings == 1
    assert row(store, "month", "2026-09").bookings == 2  # the service-date totals: both


def test_watermark_persists_between_batches() -> None:
    store: dict[str, Any] = {}
    fold(store, STREAM[:4], 0)
    result = fold(store, [STREAM[4]], 4)
    assert result.late == {0: ["event_hour"]}
    assert row(store, "event_hour", "2026-05-01T09").bookings == 2


@pytest.mark.parametrize("seed", range(30))
def test_redelivery_after_a_crash_keeps_windows_exact(seed: int) -> None:
    """A prefix of the second batch's writes survives a crash (the changelog is an ordered
    log), then the batch comes again, possibly in two batches: every window equals the run
    without a crash."""
    rng = random.Random(seed)
    whole: dict[str, Any] = {}
    fold(whole, STREAM[:3], 0)
    fold(whole, STREAM[3:], 3)
    crashed: dict[str, Any] = {}
    fold(crashed, STREAM[:3], 0)
    result = fold_batch(crashed.get, [(3 + i, e) for i, e in enumerate(STREAM[3:])], POLICY)
    crashed.update(result.writes[: rng.randint(0, len(result.writes))])
    again = [(3 + i, e) for i, e in enumerate(STREAM[3:])]
    cut = rng.randint(0, len(again))
    fold_batch_into(crashed, again[:cut])
    fold_batch_into(crashed, again[cut:])
    assert data_rows(crashed) == data_rows(whole)  # totals and offsets
    assert crashed["~watermark/0/org"]["event_time"] == "2026-05-01T11:40:00+00:00"
    assert row(crashed, "event_hour", "2026-05-01T09").bookings == 2  # event 5 is late


def fold_batch_into(store: dict[str, Any], batch: list[tuple[int, BookingEvent]]) -> None:
    store.update(fold_batch(store.get, batch, POLICY).writes)


def test_each_tenant_has_its_own_watermark() -> None:
    """Another organisation's clock running a day ahead in the same partition does not make
    this organisation's events late."""
    ahead = replace(
        ev(1, utc(2026, 5, 2, 12), amount=1),
        event_id="other-1",
        organization_id="other",
        booking_id="o-1",
        venue_id="v9",
    )
    store: dict[str, Any] = {}
    result = fold(store, [ahead, *STREAM[:4]], 0)
    assert result.outcomes == ["counted"] * 5
    assert store["~watermark/0/other"]["event_time"] == "2026-05-02T12:00:00+00:00"


def hot_hour(n: int) -> list[BookingEvent]:
    """``n`` bookings of one venue in one event-time hour (the live case: every new event lands
    in the current hour and day), each for its own service date."""
    return [
        BookingEvent(
            schema_version=1,
            event_id=f"hot-{i}",
            organization_id=ORG,
            occurred_at=utc(2026, 5, 1, 9, 0, i % 60),
            event_type="booking_created",
            booking_id=f"hb-{i}",
            venue_id="v1",
            service_date=date(2026, 1, 1) + timedelta(days=i),
            amount_minor=100 + i,
            currency="EUR",
        )
        for i in range(n)
    ]


def test_a_hot_window_row_stays_one_row_of_constant_size() -> None:
    """Thirty events into one hour, three batches: the row holds the totals and the offset
    applied up to, no event ids."""
    events = hot_hour(30)
    store: dict[str, Any] = {}
    for first in range(0, 30, 10):
        batch = [(first + i, e) for i, e in enumerate(events[first : first + 10])]
        store.update(fold_batch(store.get, batch, POLICY).writes)
    hour = store[table_key(ORG, "v1", "event_hour", "2026-05-01T09")]
    assert set(hour) == {"totals", "o"}
    assert hour["o"] == 29
    assert row_totals(hour).bookings == 30
    assert row_totals(hour).booked_minor == {"EUR": sum(100 + i for i in range(30))}
    day0 = store[table_key(ORG, "v1", "day", "2026-01-01")]
    assert day0 == {"totals": VenueTotals(1, 0, {"EUR": 100}).to_json(), "o": 0}


@pytest.mark.parametrize("seed", range(30))
def test_a_crash_between_commits_keeps_hot_windows_exact(seed: int) -> None:
    """Commit after batch 1, crash in batch 2 keeping a prefix of its writes, redeliver from
    batch 1's start or batch 2's start (the committed offset), in other batches: every row
    equals the run without a crash."""
    rng = random.Random(seed)
    events = hot_hour(20)
    b1 = list(enumerate(events[:10]))
    b2 = [(10 + i, e) for i, e in enumerate(events[10:])]
    whole: dict[str, Any] = {}
    whole.update(fold_batch(whole.get, b1, POLICY).writes)
    whole.update(fold_batch(whole.get, b2, POLICY).writes)
    crashed: dict[str, Any] = {}
    crashed.update(fold_batch(crashed.get, b1, POLICY).writes)
    lost = fold_batch(crashed.get, b2, POLICY)
    crashed.update(lost.writes[: rng.randint(0, len(lost.writes))])
    again = (b1 if rng.random() < 0.5 else []) + b2
    cut = rng.randint(0, len(again))
    for part in (again[:cut], again[cut:]):
        result = fold_batch(crashed.get, part, POLICY)
        crashed.update(result.writes)
        assert "late" not in result.outcomes
    assert data_rows(crashed) == data_rows(whole)
    assert crashed["~watermark/0/org"]["event_time"] == whole["~watermark/0/org"]["event_time"]
    assert row(crashed, "event_hour", "2026-05-01T09").bookings == 20


@pytest.mark.parametrize(
    "zone_name",
    ["Europe/Paris", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns", "UTC"],
)
def test_cached_windows_equal_the_windows_computed_per_instant(zone_name: str) -> None:
    """windows_of reuses one computation per 15 minutes; it must give exactly what
    window_of gives for each instant, also across daylight-saving changes, at 45- and
    30-minute offsets, and in 1905 Paris (local mean time, +00:09:21)."""
    zone = ZoneInfo(zone_name)
    rng = random.Random(zone_name)
    starts = [datetime(1905, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)]
    instants = [
        s + timedelta(seconds=rng.randrange(0, 300 * 86_400), microseconds=rng.randrange(10**6))
        for s in starts
        for _ in range(3_000)
    ]
    # every local midnight and the instants around it
    for s in starts:
        for day in range(300):
            midnight = datetime.combine(s.date() + timedelta(days=day), time(0), zone)
            instants.extend(midnight.astimezone(UTC) + timedelta(seconds=d) for d in (-1, 0, 1))
    for at in instants:
        assert windows_of(at, zone) == [window_of(g, at, zone) for g in WINDOW_GRAINS], at
