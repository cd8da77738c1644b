"""The booking fold: every event once per row, redelivery after a crash that kept a prefix of
the writes (all seven grains, windows with lateness), currencies, lead time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
from msgspec.structs import replace

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.bookings import (
    BatchResult,
    VenueTotals,
    fold_batch,
    row_totals,
    table_key,
)
from stream_app.tables.closing import OpenWindows
from stream_app.tables.windows import window_end
from tests.tables.model import (
    GRACE,
    batch_of,
    data_rows,
    expected_rows,
    policy,
    random_bookings,
    split,
    watermark_key,
    zone_of,
)


def booking(n: int, *, cancel: bool = False, day: int = 1, amount: int = 1000) -> BookingEvent:
    return BookingEvent(
        schema_version=1,
        event_id=f"e-{n}-{'c' if cancel else 'b'}",
        organization_id="org",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n),
        event_type="booking_cancelled" if cancel else "booking_created",
        booking_id=f"b-{n}",
        venue_id="v1" if n % 2 else "v2",
        service_date=date(2026, 6, day),
        amount_minor=amount,
        currency="EUR",
    )


def apply(store: dict[str, Any], batch: list[tuple[int, BookingEvent]]) -> None:
    store.update(fold_batch(store.get, batch).writes)


def month(store: dict[str, Any], venue: str) -> VenueTotals:
    return row_totals(store[table_key("org", venue, "month", "2026-06")])


EVENTS = [booking(n, day=1 + n % 3, amount=1000 + n) for n in range(1, 21)] + [
    booking(n, cancel=True, day=1 + n % 3, amount=1000 + n) for n in (3, 4, 9)
]


def expected() -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for v in ("v1", "v2"):
        mine = [e for e in EVENTS if e.venue_id == v]
        b = sum(1 for e in mine if e.event_type == "booking_created")
        c = sum(1 for e in mine if e.event_type == "booking_cancelled")
        rev = sum(
            e.amount_minor if e.event_type == "booking_created" else -e.amount_minor for e in mine
        )
        out[v] = (b, c, rev)
    return out


def totals(store: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    return {
        v: (
            month(store, v).bookings,
            month(store, v).cancellations,
            month(store, v).revenue_minor["EUR"],
        )
        for v in ("v1", "v2")
    }


def test_batch_folds_every_event_once() -> None:
    store: dict[str, Any] = {}
    result = fold_batch(store.get, batch_of(EVENTS))
    assert result.outcomes == ["counted"] * len(EVENTS)
    store.update(result.writes)
    # the month row equals the sum of its day rows
    for v in ("v1", "v2"):
        days = [store.get(table_key("org", v, "day", f"2026-06-0{d}")) for d in (1, 2, 3)]
        assert sum(row_totals(r).bookings for r in days) == month(store, v).bookings
    assert totals(store) == expected()
    # v1 has the odd n: 10 bookings (1..19 odd), cancellations of 3 and 9
    assert expected()["v1"][:2] == (10, 2)
    # rows are constant-size: the totals and the input offset applied up to, nothing else
    want, _ = expected_rows(batch_of(EVENTS), windows=False)
    assert store == want
    assert store[table_key("org", "v1", "month", "2026-06")]["o"] == len(EVENTS) - 1


def test_a_batch_delivered_again_at_its_own_offsets_changes_nothing() -> None:
    store: dict[str, Any] = {}
    store.update(fold_batch(store.get, batch_of(EVENTS)).writes)
    again = fold_batch(store.get, batch_of(EVENTS))
    assert again.outcomes == ["redelivered"] * len(EVENTS)
    assert again.writes == [] and again.changes == []
    # half of it again, then the rest new: only the new offsets count
    more = [booking(n, day=2, amount=5) for n in range(30, 34)]
    mixed = fold_batch(store.get, batch_of(EVENTS[10:] + more, 10))
    assert mixed.outcomes == ["redelivered"] * (len(EVENTS) - 10) + ["counted"] * 4
    store.update(mixed.writes)
    want = expected()
    assert totals(store) == {
        "v1": (want["v1"][0] + 2, want["v1"][1], want["v1"][2] + 10),
        "v2": (want["v2"][0] + 2, want["v2"][1], want["v2"][2] + 10),
    }


def run_batch(
    store: dict[str, Any],
    events: list[BookingEvent],
    first: int,
    stop: int,
    index: OpenWindows | None,
    keep: int | None = None,
) -> BatchResult:
    """Fold offsets ``[first, stop)``; write all the writes (and track the opened windows as
    the agent does once they are durable) or, for a crash, only the first ``keep``."""
    result = fold_batch(store.get, [(o, events[o]) for o in range(first, stop)], policy(index))
    if keep is None:
        store.update(result.writes)
        if index is not None:
            for org, key, closes_at in result.opened:
                index.add(org, key, closes_at)
    else:
        store.update(result.writes[:keep])
    return result


def crash_and_redeliver(seed: int, closing: bool) -> None:
    """Batches folded one after the other; up to three crashes, each keeping a random prefix
    of its batch's writes (the changelog is an ordered log), after which the input is read
    again from the start of a random earlier batch (the committed offset) in other batches.
    Every row must equal the independent model of folding each event once; a final window
    never changes again and its final value is the model's."""
    rng = random.Random(seed)
    events = random_bookings(rng, 70)
    want, _ = expected_rows(list(enumerate(events)))
    assert len(want) > 20  # many rows (late events: see the test below)
    store: dict[str, Any] = {}
    index = OpenWindows() if closing else None
    boundaries = [0]
    finals: dict[str, Any] = {}
    crashes = 0
    offset = 0
    while offset < len(events):
        stop = min(len(events), offset + rng.randint(1, 12))
        crash = crashes < 3 and rng.random() < 0.3
        result: BatchResult
        if crash:
            writes = fold_batch(
                store.get, [(o, events[o]) for o in range(offset, stop)], policy(index)
            ).writes
            keep = rng.randint(0, len(writes))
            # the watermark rows come last: a kept watermark means every row was kept
            marks = [i for i, (k, _) in enumerate(writes) if k.startswith("~watermark/")]
            assert marks == list(range(len(writes) - len(marks), len(writes)))
            store.update(writes[:keep])
            crashes += 1
            offset = rng.choice([b for b in boundaries if b <= offset])
            if index is not None:  # the partition is taken again: open windows from the rows
                index = OpenWindows.rebuild(data_rows(store).items(), zone_of, GRACE)
        else:
            result = run_batch(store, events, offset, stop, index)
            for c in result.changes:
                key = table_key(c.organization_id, c.venue_id, c.grain, c.period)
                if c.final:
                    assert c.new.to_json() == want[key]["totals"], key
            offset = stop
            boundaries.append(offset)
        for key, value in store.items():
            if key in finals:
                assert value == finals[key], key  # final: never written again differently
            elif isinstance(value, dict) and value.get("final"):
                finals[key] = value
    rows = data_rows(store)
    assert {k: {"totals": v["totals"], "o": v["o"]} for k, v in rows.items()} == want
    for org in ("a", "b"):
        mark = max(e.occurred_at for e in events if e.organization_id == org)
        assert store[watermark_key(org)]["event_time"] == mark.isoformat()
    if closing:
        assert finals  # windows were closed and reported
    for key in finals:
        org = key.split("/")[0]
        assert row_totals(store[key]).to_json() == want[key]["totals"]
        assert key.split("/")[2] not in ("day", "month")
        closed_at = window_end_of(key) + GRACE
        assert datetime.fromisoformat(store[watermark_key(org)]["event_time"]) >= closed_at


def window_end_of(key: str) -> datetime:
    org, _, grain, label = key.split("/")
    return window_end(grain, label, zone_of(org))


@pytest.mark.parametrize("seed", range(60))
def test_redelivery_after_a_crash_that_kept_a_prefix_folds_every_row_once(seed: int) -> None:
    crash_and_redeliver(seed, closing=False)


@pytest.mark.parametrize("seed", range(60))
def test_redelivery_after_a_crash_with_final_windows_folds_every_row_once(seed: int) -> None:
    crash_and_redeliver(seed, closing=True)


def test_the_first_pass_reports_the_late_events_of_the_model() -> None:
    events = random_bookings(random.Random(7), 200)
    _, late = expected_rows(list(enumerate(events)))
    store: dict[str, Any] = {}
    got_late: dict[int, list[str]] = {}
    outcomes: list[str] = []
    for first, stop in split(random.Random(8), 0, len(events)):
        result = run_batch(store, events, first, stop, None)
        got_late.update({first + i: list(g) for i, g in result.late.items()})
        outcomes += result.outcomes
    assert got_late == late
    assert [o for o, out in enumerate(outcomes) if out == "late"] == sorted(late)
    assert set(outcomes) == {"counted", "late"}


def test_rows_of_the_old_roll_up_shape_still_read() -> None:
    """Rows written before rows carried ``o`` (month roll-ups with ``days``) read as the sum
    of their days."""
    row = {
        "days": {
            "2026-06-01": VenueTotals(1, 0, {"EUR": 5}).to_json(),
            "2026-06-02": VenueTotals(2, 1, {"EUR": 7}, {"EUR": 3}).to_json(),
        }
    }
    got = row_totals(row)
    assert (got.bookings, got.cancellations, got.revenue_minor) == (3, 1, {"EUR": 9})


def test_currencies_are_never_added_together() -> None:
    usd = replace(booking(0, day=2, amount=500), event_id="usd-1", venue_id="v1", currency="USD")
    store: dict[str, Any] = {}
    apply(store, batch_of([EVENTS[0], usd]))
    assert month(store, "v1").revenue_minor == {"EUR": 1001, "USD": 500}


def test_revenue_is_booked_minus_cancelled_per_currency_sorted_by_code() -> None:
    """The one-currency shortcut and the general rule agree with the definition."""
    rng = random.Random(3)
    for _ in range(5_000):
        codes = ["EUR", "USD", "GBP"]
        booked = {c: rng.randint(0, 9) for c in rng.sample(codes, rng.randint(0, 3))}
        cancelled = {c: rng.randint(0, 9) for c in rng.sample(codes, rng.randint(0, 3))}
        got = VenueTotals(booked_minor=booked, cancelled_minor=cancelled).revenue_minor
        want = {
            c: booked.get(c, 0) - cancelled.get(c, 0) for c in sorted(set(booked) | set(cancelled))
        }
        assert list(got.items()) == list(want.items()), (booked, cancelled)


def test_lead_time_sums_the_bookings_that_state_one_and_ignores_cancellations() -> None:
    events = []
    for n in range(1, 31):
        b = booking(n, day=1 + n % 3)
        lead = None if n % 7 == 0 else (n * 13) % 200
        events.append(msgspec.structs.replace(b, lead_time_days=lead))
    cancels = [
        msgspec.structs.replace(booking(n, cancel=True, day=1 + n % 3), lead_time_days=999)
        for n in (2, 5)
    ]
    store: dict[str, Any] = {}
    apply(store, batch_of(events + cancels))
    for v in ("v1", "v2"):
        mine = [e for e in events if e.venue_id == v and e.lead_time_days is not None]
        want_sum, want_n = sum(e.lead_time_days or 0 for e in mine), len(mine)
        got = month(store, v)
        assert (got.lead_time_days_sum, got.lead_time_bookings) == (want_sum, want_n)
        assert got.average_lead_time_milli_days == want_sum * 1000 // want_n
    assert VenueTotals().average_lead_time_milli_days is None
