"""The batch fold: duplicates, redelivery after a crash that kept a prefix of the writes."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.bookings import (
    VenueTotals,
    fold_batch,
    row_totals,
    sum_totals,
    table_key,
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


def batch_of(events: list[BookingEvent], first_offset: int = 0) -> list[tuple[int, BookingEvent]]:
    return [(first_offset + i, e) for i, e in enumerate(events)]


def apply(
    store: dict[str, Any], batch: list[tuple[int, BookingEvent]], keep: int | None = None
) -> None:
    result = fold_batch(store.get, batch)
    writes = result.writes if keep is None else result.writes[:keep]
    store.update(writes)


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
    apply(store, batch_of(EVENTS))
    # the month roll-up equals the sum of its day rows
    for v in ("v1", "v2"):
        days = [store.get(table_key("org", v, "day", f"2026-06-0{d}")) for d in (1, 2, 3)]
        assert sum(row_totals(r).bookings for r in days) == month(store, v).bookings
    assert totals(store) == expected()
    # v1 has the odd n: 10 bookings (1..19 odd), cancellations of 3 and 9
    assert expected()["v1"][:2] == (10, 2)


def test_duplicate_messages_at_later_offsets_are_skipped() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of(EVENTS))
    again = fold_batch(store.get, batch_of(EVENTS, first_offset=1000))
    assert again.outcomes == ["duplicate"] * len(EVENTS)
    assert again.writes == []
    # a duplicate inside one batch
    store2: dict[str, Any] = {}
    twice = fold_batch(store2.get, batch_of([EVENTS[0], EVENTS[0]]))
    assert twice.outcomes == ["counted", "duplicate"]


@pytest.mark.parametrize("seed", range(40))
def test_redelivery_after_a_crash_that_kept_any_subset_of_the_writes(seed: int) -> None:
    """A crash may keep any subset of a batch's writes (no ordering is relied on); the
    redelivery may come in another order and in other batches."""
    rng = random.Random(seed)
    first, second = EVENTS[:12], EVENTS[12:]
    store: dict[str, Any] = {}
    apply(store, batch_of(first))  # committed batch
    b2 = batch_of(second, first_offset=12)
    result = fold_batch(store.get, b2)
    store.update(w for w in result.writes if rng.random() < 0.5)  # the crash
    redelivered = b2[:]
    rng.shuffle(redelivered)
    cut = rng.randrange(len(redelivered) + 1)
    apply(store, redelivered[:cut])
    apply(store, redelivered[cut:])
    assert totals(store) == expected()
    assert_rollups_sum_their_days(store)


def assert_rollups_sum_their_days(store: dict[str, Any]) -> None:
    """A roll-up row's stored ``totals`` equal the sum of its day entries, recomputed here."""
    rollups = {k: v for k, v in store.items() if "days" in v}
    assert rollups
    for key, row in rollups.items():
        summed = sum_totals(VenueTotals.from_json(d) for d in row["days"].values())
        assert VenueTotals.from_json(row["totals"]) == summed, key


def test_rollup_rows_written_before_their_totals_field_still_read_and_update() -> None:
    """Rows from before ``totals`` was stored read as the sum of their days, and the next
    batch writes the field."""
    store: dict[str, Any] = {}
    apply(store, batch_of(EVENTS[:10]))
    for row in store.values():
        if "days" in row:
            del row["totals"]
    assert totals(store) != expected()  # only part of the events so far
    apply(store, batch_of(EVENTS[10:], first_offset=10))
    assert totals(store) == expected()
    assert_rollups_sum_their_days(store)


def test_currencies_are_never_added_together() -> None:
    usd = BookingEvent(
        schema_version=1,
        event_id="usd-1",
        organization_id="org",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        event_type="booking_created",
        booking_id="b-usd",
        venue_id="v1",
        service_date=date(2026, 6, 2),
        amount_minor=500,
        currency="USD",
    )
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
