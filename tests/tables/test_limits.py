"""The largest value a row holds: an event that would take a sum of minor units past
ROW_LIMIT (2^63 - 1) is refused before it changes any of its rows, in the booking fold (with
its seven rows and windows) and the guarded folds (payments); the rest of the batch folds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from msgspec.structs import replace

from stream_app.schemas.bookings import BookingEvent
from stream_app.schemas.payments import PaymentEvent
from stream_app.tables import payments
from stream_app.tables.bookings import fold_batch, row_totals, table_key
from stream_app.tables.limits import ROW_LIMIT, reason
from tests.tables.model import policy

MAX_AMOUNT = 10**15
"""The largest ``amount_minor`` of an event (``stream_app.schemas.base.MinorUnits``)."""


def booking(n: int, amount: int, *, cancel: bool = False) -> BookingEvent:
    """Booking ``n`` of organisation a's venue v1 for 1 June 2026, made ``n`` ms into 2026."""
    return BookingEvent(
        schema_version=1,
        event_id=f"e-{n}",
        organization_id="a",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=n),
        event_type="booking_cancelled" if cancel else "booking_created",
        booking_id=f"b-{n}",
        venue_id="v1",
        service_date=date(2026, 6, 1),
        amount_minor=amount,
        currency="EUR",
    )


DAY = table_key("a", "v1", "day", "2026-06-01")
MONTH = table_key("a", "v1", "month", "2026-06")


def test_a_booking_past_the_limit_of_one_row_changes_none_of_its_rows() -> None:
    # the day row is 500 short of the limit (stored before the batch); the month row is not
    near = {"bookings": 7, "cancellations": 0, "booked_minor": {"EUR": ROW_LIMIT - 500}}
    near |= {"cancelled_minor": {}, "lead_time_days_sum": 0, "lead_time_bookings": 0}
    store: dict[str, Any] = {DAY: {"totals": near, "o": 9}}
    batch = [
        (10, booking(10, 400)),  # fits: 100 short
        (11, booking(11, 200)),  # would pass it by 100: refused
        (12, booking(12, 1_000_000, cancel=True)),  # cancelled value: another sum, fits
        (13, booking(13, 100)),  # exactly the limit
    ]
    result = fold_batch(store.get, batch, policy())
    assert result.refused == [(11, DAY)]
    assert result.outcomes == ["counted", "counted", "counted"]
    store.update(result.writes)
    day, month = row_totals(store[DAY]), row_totals(store[MONTH])
    assert (day.bookings, day.booked_minor) == (9, {"EUR": ROW_LIMIT})
    assert day.cancelled_minor == {"EUR": 1_000_000}
    # all or nothing: the refused event is in none of its other six rows either
    assert (month.bookings, month.booked_minor) == (2, {"EUR": 500})
    windows = [k for k in store if "/event_" in k]
    assert len(windows) == 5
    for key in windows:
        totals = row_totals(store[key])
        assert (totals.bookings, totals.booked_minor, totals.cancellations) == (
            2,
            {"EUR": 500},
            1,
        ), key
    # the batch delivered again (after a crash): every row is past its offsets, nothing changes
    again = fold_batch(store.get, batch, policy())
    assert (again.refused, again.writes) == ([], [])
    assert again.outcomes == ["redelivered"] * 4


def test_the_largest_amounts_in_one_batch_stop_at_the_last_that_fits() -> None:
    fits = ROW_LIMIT // MAX_AMOUNT  # 9,223
    batch = [(n, booking(n, MAX_AMOUNT)) for n in range(fits + 3)]
    store: dict[str, Any] = {}
    result = fold_batch(store.get, batch, policy())
    # every row of these events is the same sum: the first of the seven, the day row, is named
    assert result.refused == [(n, DAY) for n in range(fits, fits + 3)]
    store.update(result.writes)
    for key in [k for k in store if not k.startswith("~")]:
        totals = row_totals(store[key])
        assert (totals.bookings, totals.booked_minor) == (fits, {"EUR": fits * MAX_AMOUNT}), key
    # a later batch: each of its largest events refused, a small one still fits
    later = [(fits + 3, booking(fits + 3, MAX_AMOUNT)), (fits + 4, booking(fits + 4, 7))]
    result = fold_batch(store.get, later, policy())
    assert result.refused == [(fits + 3, DAY)]
    store.update(result.writes)
    assert row_totals(store[MONTH]).booked_minor == {"EUR": fits * MAX_AMOUNT + 7}


def payment(n: int, amount: int, *, refund: bool = False) -> PaymentEvent:
    """Payment ``n`` of booking bk1 in March 2026."""
    return PaymentEvent(
        schema_version=1,
        event_id=f"p-{n}",
        organization_id="org",
        occurred_at=datetime(2026, 3, 1, 10, tzinfo=UTC) + timedelta(seconds=n),
        event_type="refund_issued" if refund else "payment_received",
        payment_id=f"pay-{n}",
        booking_id="bk1",
        amount_minor=amount,
        currency="EUR",
        supplier_id="s1",
    )


def test_a_payment_past_the_limit_changes_neither_of_its_rows() -> None:
    total, month = payments.total_key("org", "bk1"), payments.month_key("org", "bk1", "2026-03")
    near = {"payments": 3, "refunds": 0, "paid_minor": {"EUR": ROW_LIMIT - 10}}
    store: dict[str, Any] = {total: {"values": near | {"refunded_minor": {}}, "o": 4}}
    batch = [(5, payment(5, 11)), (6, payment(6, 11, refund=True)), (7, payment(7, 10))]
    result = payments.fold_batch(store.get, batch)
    assert result.refused == [(5, total)]
    assert result.outcomes == ["counted", "counted"]
    store.update(result.writes)
    assert store[total]["values"]["paid_minor"] == {"EUR": ROW_LIMIT}
    assert store[total]["values"]["payments"] == 4
    # the month row (far from the limit) has the two events folded, not the refused one
    (supplier,) = store[month]["values"]["by_supplier"].values()
    assert (supplier["payments"], supplier["collected_minor"]) == (1, {"EUR": 10})
    assert (supplier["refunds"], supplier["refunded_minor"]) == (1, {"EUR": 11})


def test_the_reason_names_the_row_and_the_limit() -> None:
    assert reason("org/v1/day/2026-06-01") == (
        "folding it would take row 'org/v1/day/2026-06-01' past 9,223,372,036,854,775,807,"
        " the largest value a table row holds (a signed 64-bit integer)"
    )
    assert replace(booking(1, 5), amount_minor=MAX_AMOUNT).amount_minor == MAX_AMOUNT
