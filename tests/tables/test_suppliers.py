"""The supplier-activity fold: counts per month (UTC; the organisation's calendar in the last
test), on time vs late, per person; redelivery."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from stream_app.schemas.suppliers import SupplierActivityEvent
from stream_app.tables.suppliers import fold_batch, fold_batch_in, month_key
from tests.tables.model import apply_writes, batch_of

Kind = Literal["task_assigned", "task_completed", "delivery_made"]
KINDS: tuple[Kind, ...] = ("task_assigned", "task_completed", "delivery_made")
BASE = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)


def activity(n: int) -> SupplierActivityEvent:
    at = BASE + timedelta(hours=n)  # n >= 4 is in April (UTC)
    due = None if n % 5 == 0 else at + timedelta(hours=1 if n % 2 else -1)
    return SupplierActivityEvent(
        schema_version=1,
        event_id=f"a-{n}",
        organization_id="org",
        occurred_at=at,
        event_type=KINDS[n % 3],
        supplier_id="sup",
        task_id=f"t-{n}",
        due_at=due,
        person_id=None if n % 7 == 0 else f"p{n % 2}",
    )


EVENTS = [activity(n) for n in range(24)]


def apply(store: dict[str, Any], batch: list[tuple[int, Any]]) -> None:
    apply_writes(store, fold_batch(store.get, batch).writes)


def expected() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for month in ("2026-03", "2026-04"):
        mine = [e for e in EVENTS if f"{e.occurred_at:%Y-%m}" == month]
        done = [e for e in mine if e.event_type != "task_assigned"]
        per_person: dict[str, Counter[str]] = {}
        for e in mine:
            per_person.setdefault(e.person_id or "-", Counter())[e.event_type] += 1
        out[month] = {
            "tasks_assigned": sum(e.event_type == "task_assigned" for e in mine),
            "tasks_completed": sum(e.event_type == "task_completed" for e in mine),
            "deliveries_made": sum(e.event_type == "delivery_made" for e in mine),
            "on_time": sum(e.due_at is not None and e.occurred_at <= e.due_at for e in done),
            "late": sum(e.due_at is not None and e.occurred_at > e.due_at for e in done),
            "no_due": sum(e.due_at is None for e in done),
            "per_person": {p: dict(c) for p, c in per_person.items()},
        }
    return out


def actual(store: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m: store[month_key("org", "sup", m)]["values"] for m in ("2026-03", "2026-04")}


def test_every_event_counted_once() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of(EVENTS))
    assert actual(store) == expected()
    assert expected()["2026-04"]["late"] > 0 and expected()["2026-04"]["on_time"] > 0


def test_one_write_per_distinct_row_of_constant_size() -> None:
    store: dict[str, Any] = {}
    result = fold_batch(store.get, batch_of(EVENTS))
    assert [k for k, _ in result.writes] == [month_key("org", "sup", m) for m in expected()]
    assert [(v or {}).get("o") for _, v in result.writes] == [
        max(i for i, e in enumerate(EVENTS) if f"{e.occurred_at:%Y-%m}" == m) for m in expected()
    ]
    assert all(set(v or {}) == {"values", "o"} for _, v in result.writes)


def test_months_are_the_organisations_calendar() -> None:
    """A supplier-month row is the month of the event's instant on its organisation's
    calendar; expected months worked out by hand (London: UTC+1 from 29 March 2026 to 25
    October 2026, UTC+0 outside; Tokyo UTC+9)."""
    zones = {"london": ZoneInfo("Europe/London"), "tokyo": ZoneInfo("Asia/Tokyo")}
    cases = [  # (organisation, instant in UTC, the month on its calendar)
        ("london", datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "2026-04"),  # 00:30 BST, 1 Apr
        ("london", datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "2026-10"),  # 23:30 GMT, 31 Oct
        ("tokyo", datetime(2026, 1, 31, 15, 0, tzinfo=UTC), "2026-02"),  # 00:00 on 1 Feb
        ("tokyo", datetime(2026, 1, 31, 14, 59, tzinfo=UTC), "2026-01"),  # 23:59 on 31 Jan
    ]
    events = [
        SupplierActivityEvent(
            schema_version=1,
            event_id=f"z-{i}",
            organization_id=org,
            occurred_at=at,
            event_type="task_assigned",
            supplier_id=f"sup-{i}",
            task_id=f"zt-{i}",
            due_at=None,
            person_id="p1",
        )
        for i, (org, at, _) in enumerate(cases)
    ]
    store: dict[str, Any] = {}
    fold = fold_batch_in(lambda org: zones.get(org, UTC))
    apply_writes(store, fold(store.get, batch_of(events)).writes)
    assert set(store) == {month_key(org, f"sup-{i}", m) for i, (org, _, m) in enumerate(cases)}
    for i, (org, _, month) in enumerate(cases):
        assert store[month_key(org, f"sup-{i}", month)]["values"]["tasks_assigned"] == 1
