"""Final windows: the open windows of a partition (OpenWindows), the final value written and
reported once per closed window by the fold, late events for a final window, window ends."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.bookings import BatchResult, fold_batch, row_totals, table_key
from stream_app.tables.closing import OpenWindows
from stream_app.tables.windows import WINDOW_GRAINS, WindowGrain, window_end, window_of
from tests.tables.model import (
    GRACE,
    data_rows,
    expected_rows,
    policy,
    random_bookings,
    split,
    zone_of,
)

LONDON = ZoneInfo("Europe/London")


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_closing_returns_each_key_once_in_close_order_per_organisation() -> None:
    index = OpenWindows()
    index.add("a", "a/v/event_hour/3", utc(5, 1, 13))
    index.add("a", "a/v/event_hour/1", utc(5, 1, 11))
    index.add("b", "b/v/event_hour/1", utc(5, 1, 9))
    index.add("a", "a/v/event_hour/2", utc(5, 1, 12))
    index.add("a", "a/v/event_hour/1", utc(5, 1, 11))  # already tracked: ignored
    assert len(index) == 4
    assert index.closing("a", utc(5, 1, 10, 59)) == []
    assert index.closing("a", utc(5, 1, 12)) == ["a/v/event_hour/1", "a/v/event_hour/2"]
    assert index.closing("a", utc(5, 1, 12)) == []  # each key once
    assert index.organizations() == {"a", "b"}
    assert index.closing("a", utc(5, 2, 0)) == ["a/v/event_hour/3"]
    # another organisation's watermark closes nothing of "a", and the other way round
    assert index.closing("c", utc(6, 1, 0)) == []
    assert index.organizations() == {"b"}
    assert index.closing("b", utc(5, 1, 9)) == ["b/v/event_hour/1"]
    assert len(index) == 0


def booking(n: int, org: str, at: datetime, amount: int = 100) -> BookingEvent:
    return BookingEvent(
        schema_version=1,
        event_id=f"{org}-{n}",
        organization_id=org,
        occurred_at=at,
        event_type="booking_created",
        booking_id=f"b-{n}",
        venue_id="v1",
        service_date=date(2026, 9, 5),
        amount_minor=amount,
        currency="EUR",
    )


class Partition:
    """A partition's table and open windows, batches folded as the agent folds them."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}
        self.index = OpenWindows()
        self.offset = 0
        self.events: list[tuple[int, BookingEvent]] = []
        self.final_writes: Counter[str] = Counter()
        self.final_changes: list[Any] = []

    def fold(self, events: list[BookingEvent]) -> BatchResult:
        batch = [(self.offset + i, e) for i, e in enumerate(events)]
        self.offset += len(events)
        self.events += batch
        result = fold_batch(self.store.get, batch, policy(self.index))
        self.store.update(result.writes)
        for org, key, closes_at in result.opened:  # once durable, as the agent does
            self.index.add(org, key, closes_at)
        self.final_writes.update(k for k, v in result.writes if v.get("final"))
        self.final_changes += [c for c in result.changes if c.final]
        return result


def hour_key(org: str, label: str) -> str:
    return table_key(org, "v1", "event_hour", f"2026-05-01T{label}")


def test_a_closed_window_is_written_final_once_and_reported_with_its_totals() -> None:
    p = Partition()
    p.fold([booking(1, "a", utc(5, 1, 9, 5), 100), booking(2, "a", utc(5, 1, 9, 50), 250)])
    p.fold([booking(3, "b", utc(5, 1, 9, 10)), booking(4, "a", utc(5, 1, 10, 20), 7)])
    assert not p.final_writes  # hour 09 of "a" closes at 10:30 (grace 30 min)
    result = p.fold([booking(5, "a", utc(5, 1, 10, 40), 30)])
    assert p.final_writes == Counter({hour_key("a", "09"): 1})
    (final,) = [c for c in result.changes if c.final]
    assert (final.organization_id, final.grain, final.period) == (
        "a",
        "event_hour",
        "2026-05-01T09",
    )
    assert (final.new.bookings, final.new.booked_minor) == (2, {"EUR": 350})
    assert p.store[hour_key("a", "09")]["final"] is True
    # org "b" has its own watermark (09:10): its hour 09 is still open
    assert "final" not in p.store[hour_key("b", "09")]

    # a late event for the final window: not folded into it, reported late
    result = p.fold([booking(6, "a", utc(5, 1, 9, 55), 1000)])
    assert result.outcomes == ["late"]
    assert result.late == {0: ["event_hour"]}
    assert row_totals(p.store[hour_key("a", "09")]).booked_minor == {"EUR": 350}
    assert row_totals(p.store[table_key("a", "v1", "event_day", "2026-05-01")]).bookings == 5

    # the watermark moves on: hour 10 closes once, hour 09 is not written again
    p.fold([booking(7, "a", utc(5, 1, 12))])
    p.fold([booking(8, "a", utc(5, 1, 12, 5))])
    assert p.final_writes == Counter({hour_key("a", "09"): 1, hour_key("a", "10"): 1})
    assert row_totals(p.store[hour_key("a", "10")]).booked_minor == {"EUR": 37}


def test_a_window_opened_and_closed_by_one_batch_is_final_in_that_batch() -> None:
    p = Partition()
    result = p.fold([booking(1, "a", utc(5, 1, 13, 5), 40), booking(2, "a", utc(5, 1, 15))])
    assert [(c.period, c.new.booked_minor) for c in result.changes if c.final] == [
        ("2026-05-01T13", {"EUR": 40})
    ]
    assert p.store[hour_key("a", "13")]["final"] is True
    assert hour_key("a", "13") not in {k for _, k, _ in result.opened}


def test_without_closing_no_window_is_final() -> None:
    store: dict[str, Any] = {}
    batch = [(0, booking(1, "a", utc(5, 1, 13, 5))), (1, booking(2, "a", utc(5, 1, 15)))]
    result = fold_batch(store.get, batch, policy(None))
    assert not [c for c in result.changes if c.final]
    assert not [k for k, v in result.writes if v.get("final")]


@pytest.mark.parametrize("seed", range(20))
def test_every_closed_window_is_final_exactly_once_with_its_independent_totals(seed: int) -> None:
    """A random stream of two organisations in random batches: at the end, the windows
    written final are exactly those whose end + grace the organisation's watermark reached,
    each written and reported final once, with the totals of the independent model; a late
    event never changes a final window."""
    rng = random.Random(seed)
    events = random_bookings(rng, 120)
    p = Partition()
    for first, stop in split(rng, 0, len(events)):
        p.fold(events[first:stop])
    want, _ = expected_rows(list(enumerate(events)))
    marks = {org: max(e.occurred_at for e in events if e.organization_id == org) for org in "ab"}
    closed = {
        key
        for key in want
        if key.split("/")[2] in WINDOW_GRAINS and marks[key.split("/")[0]] >= end_of(key) + GRACE
    }
    assert closed and set(p.final_writes) == closed
    assert max(p.final_writes.values()) == 1
    assert len(p.final_changes) == len(p.final_writes)
    for c in p.final_changes:
        key = table_key(c.organization_id, c.venue_id, c.grain, c.period)
        assert c.new.to_json() == want[key]["totals"], key
    assert {k for k, v in data_rows(p.store).items() if v.get("final")} == closed


def end_of(key: str) -> datetime:
    org, _, grain, label = key.split("/")
    return window_end(grain, label, zone_of(org))


@pytest.mark.parametrize("seed", range(10))
def test_rebuild_finds_exactly_the_window_rows_not_final(seed: int) -> None:
    rng = random.Random(seed)
    events = random_bookings(rng, 100)
    p = Partition()
    for first, stop in split(rng, 0, len(events)):
        p.fold(events[first:stop])
    rows = data_rows(p.store)
    open_keys = {
        k for k, v in rows.items() if k.split("/")[2] in WINDOW_GRAINS and not v.get("final")
    }
    assert open_keys and len(open_keys) < len(rows)
    rebuilt = OpenWindows.rebuild(p.store.items(), zone_of, GRACE)  # with ~ rows: skipped
    assert len(rebuilt) == len(open_keys)
    far = datetime(2099, 1, 1, tzinfo=UTC)
    for org in "ab":
        got = rebuilt.closing(org, far)
        mine = [k for k in open_keys if k.startswith(f"{org}/")]
        assert got == sorted(mine, key=lambda k: (end_of(k), k))
    # the same as the windows the live index still tracks
    assert sorted(p.index.closing("a", far) + p.index.closing("b", far)) == sorted(open_keys)


@pytest.mark.parametrize(
    ("grain", "label", "zone", "end"),
    [
        ("event_hour", "2026-03-29T00", LONDON, utc(3, 29, 1)),
        ("event_day_utc", "2026-03-29", LONDON, utc(3, 30, 0)),
        # London springs forward on 29 March: the day ends at midnight BST, 23:00 UTC
        ("event_day", "2026-03-29", LONDON, utc(3, 29, 23)),
        ("event_day", "2026-03-28", LONDON, utc(3, 29, 0)),
        # and falls back on 25 October: the 25-hour day ends at midnight GMT
        ("event_day", "2026-10-25", LONDON, utc(10, 26, 0)),
        # ISO week 13 of 2026: Monday 23 to Sunday 29 March, ends Monday 30 at 00:00 BST
        ("event_week", "2026-W13", LONDON, utc(3, 29, 23)),
        # week 53 of 2026 runs to Sunday 3 January 2027
        ("event_week", "2026-W53", LONDON, datetime(2027, 1, 4, tzinfo=UTC)),
        ("event_month", "2026-03", LONDON, utc(3, 31, 23)),
        ("event_month", "2026-12", LONDON, datetime(2027, 1, 1, tzinfo=UTC)),
        ("event_day", "2026-07-01", ZoneInfo("Asia/Kolkata"), utc(7, 1, 18, 30)),
    ],
)
def test_window_end_of_each_grain(
    grain: WindowGrain, label: str, zone: ZoneInfo, end: datetime
) -> None:
    assert window_end(grain, label, zone) == end


@pytest.mark.parametrize("zone_name", ["Europe/London", "America/New_York", "Asia/Kolkata"])
def test_window_end_agrees_with_the_window_of_an_instant(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    rng = random.Random(zone_name)
    for _ in range(2_000):
        at = utc(1, 1, 0) + timedelta(seconds=rng.randrange(365 * 86_400))
        for grain in WINDOW_GRAINS:
            w = window_of(grain, at, zone)
            assert window_end(grain, w.label, zone) == w.end, (grain, at)


def test_window_end_refuses_a_bad_label() -> None:
    with pytest.raises(ValueError, match="event_week label"):
        window_end("event_week", "2026-13", LONDON)
