"""The payments fold: totals per booking and currency, months on the organisation's calendar,
redelivery after a crash that kept a prefix of the writes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from stream_app.schemas.payments import PaymentEvent
from stream_app.tables.payments import fold_batch, fold_batch_in, month_key, total_key
from tests.tables.model import apply_writes, batch_of


def payment(n: int, *, refund: bool = False, currency: str = "EUR") -> PaymentEvent:
    return PaymentEvent(
        schema_version=1,
        event_id=f"p-{n}-{'r' if refund else 'p'}-{currency}",
        organization_id="org",
        # n = 0..: months 2026-05 (n < 10) and 2026-06; the boundary is UTC midnight
        occurred_at=datetime(2026, 5, 31, 23, 0, tzinfo=UTC) + timedelta(minutes=6 * (n - 9)),
        event_type="refund_issued" if refund else "payment_received",
        payment_id=f"pay-{n}-{refund}",
        booking_id=f"b{n % 3}",
        amount_minor=1000 * n + 7,
        currency=currency,
        supplier_id=None if n % 4 == 0 else f"s{n % 2}",
    )


EVENTS = (
    [payment(n) for n in range(20)]
    + [payment(n, currency="USD") for n in (2, 5, 11)]
    + [payment(n, refund=True) for n in (3, 4, 12)]
    + [payment(n, refund=True, currency="USD") for n in (5,)]
)


def apply(store: dict[str, Any], batch: list[tuple[int, PaymentEvent]]) -> None:
    apply_writes(store, fold_batch(store.get, batch).writes)


def expected_totals() -> dict[str, dict[str, Any]]:
    """Per booking, straight from the events: counts and sums per currency."""
    out: dict[str, dict[str, Any]] = {}
    for b in ("b0", "b1", "b2"):
        mine = [e for e in EVENTS if e.booking_id == b]
        paid: dict[str, int] = defaultdict(int)
        refunded: dict[str, int] = defaultdict(int)
        for e in mine:
            (paid if e.event_type == "payment_received" else refunded)[e.currency] += e.amount_minor
        out[b] = {
            "payments": sum(e.event_type == "payment_received" for e in mine),
            "refunds": sum(e.event_type == "refund_issued" for e in mine),
            "paid_minor": dict(paid),
            "refunded_minor": dict(refunded),
        }
    return out


def expected_supplier_months() -> dict[tuple[str, str, str], dict[str, int]]:
    """(supplier, month, currency) → collected and refunded, aggregated across bookings."""
    out: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
        lambda: {"collected": 0, "refunded": 0}
    )
    for e in EVENTS:
        month = "2026-05" if e.occurred_at < datetime(2026, 6, 1, tzinfo=UTC) else "2026-06"
        kind = "collected" if e.event_type == "payment_received" else "refunded"
        out[(e.supplier_id or "-", month, e.currency)][kind] += e.amount_minor
    return dict(out)


def actual_totals(store: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b: store[total_key("org", b)]["values"] for b in ("b0", "b1", "b2")}


def actual_supplier_months(store: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, int]]:
    """Read-time aggregation across bookings (as the module docstring describes)."""
    out: dict[tuple[str, str, str], dict[str, int]] = defaultdict(
        lambda: {"collected": 0, "refunded": 0}
    )
    for b in ("b0", "b1", "b2"):
        for month in ("2026-05", "2026-06"):
            row = store.get(month_key("org", b, month))
            for supplier, s in (row["values"]["by_supplier"] if row else {}).items():
                for cur, v in s["collected_minor"].items():
                    out[(supplier, month, cur)]["collected"] += v
                for cur, v in s["refunded_minor"].items():
                    out[(supplier, month, cur)]["refunded"] += v
    return dict(out)


def test_every_event_counted_once_per_booking_currency_and_supplier_month() -> None:
    store: dict[str, Any] = {}
    result = fold_batch(store.get, batch_of(EVENTS))
    assert result.outcomes == ["counted"] * len(EVENTS)
    # one write per distinct row, each {"values", "o"}: no guard rows, no id lists
    keys = [k for k, _ in result.writes]
    months = {(e.booking_id, f"{e.occurred_at:%Y-%m}") for e in EVENTS}
    assert len(keys) == len(set(keys)) == 3 + len(months)  # all-time rows, booking months
    assert all(set(v or {}) == {"values", "o"} for _, v in result.writes)
    apply(store, batch_of(EVENTS))
    assert actual_totals(store) == expected_totals()
    assert actual_supplier_months(store) == expected_supplier_months()


def test_currencies_are_never_added_together() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of([payment(2), payment(2, currency="USD"), payment(5, refund=True)]))
    assert store[total_key("org", "b2")]["values"]["paid_minor"] == {"EUR": 2007, "USD": 2007}
    assert store[total_key("org", "b2")]["values"]["refunded_minor"] == {"EUR": 5007}


def test_months_are_the_organisations_calendar() -> None:
    """A payment's month row is the month of its instant on its organisation's calendar:
    expected months worked out by hand from the zones' offsets on those dates (Berlin UTC+2
    in summer and UTC+1 in winter, New York UTC-4 in summer), not by the code's conversion."""
    zones = {"berlin": ZoneInfo("Europe/Berlin"), "ny": ZoneInfo("America/New_York")}
    cases = [  # (organisation, instant in UTC, the month on its calendar)
        ("berlin", datetime(2026, 5, 31, 22, 30, tzinfo=UTC), "2026-06"),  # 00:30 on 1 June
        ("berlin", datetime(2026, 5, 31, 21, 59, tzinfo=UTC), "2026-05"),  # 23:59 on 31 May
        ("berlin", datetime(2025, 12, 31, 23, 0, tzinfo=UTC), "2026-01"),  # 00:00 on 1 Jan
        ("ny", datetime(2026, 6, 1, 3, 59, tzinfo=UTC), "2026-05"),  # 23:59 on 31 May
        ("ny", datetime(2026, 6, 1, 4, 0, tzinfo=UTC), "2026-06"),  # 00:00 on 1 June
        ("elsewhere", datetime(2026, 5, 31, 23, 30, tzinfo=UTC), "2026-05"),  # not registered: UTC
    ]
    events = [
        PaymentEvent(
            schema_version=1,
            event_id=f"z-{i}",
            organization_id=org,
            occurred_at=at,
            event_type="payment_received",
            payment_id=f"zp-{i}",
            booking_id=f"zb-{i}",
            amount_minor=100 + i,
            currency="EUR",
            supplier_id="s1",
        )
        for i, (org, at, _) in enumerate(cases)
    ]
    store: dict[str, Any] = {}
    fold = fold_batch_in(lambda org: zones.get(org, UTC))
    apply_writes(store, fold(store.get, batch_of(events)).writes)
    months = {k for k in store if "/month/" in k}
    assert months == {month_key(org, f"zb-{i}", month) for i, (org, _, month) in enumerate(cases)}
    for i, (org, _, month) in enumerate(cases):
        row = store[month_key(org, f"zb-{i}", month)]["values"]
        assert row["by_supplier"]["s1"]["collected_minor"] == {"EUR": 100 + i}
    # the same events without the zones: every organisation's month is the UTC month
    utc_store: dict[str, Any] = {}
    apply_writes(utc_store, fold_batch(utc_store.get, batch_of(events)).writes)
    assert {k for k in utc_store if "/month/" in k} == {
        month_key("berlin", "zb-0", "2026-05"),
        month_key("berlin", "zb-1", "2026-05"),
        month_key("berlin", "zb-2", "2025-12"),
        month_key("ny", "zb-3", "2026-06"),
        month_key("ny", "zb-4", "2026-06"),
        month_key("elsewhere", "zb-5", "2026-05"),
    }
