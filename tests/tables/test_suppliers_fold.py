"""The supplier-activity fold: counts per UTC month, on time vs late, per person; redelivery."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from stream_app.schemas.suppliers import SupplierActivityEvent
from stream_app.tables.suppliers import fold_batch, month_key

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


def batch_of(events: list[SupplierActivityEvent], first: int = 0) -> list[tuple[int, Any]]:
    return [(first + i, e) for i, e in enumerate(events)]


def apply(store: dict[str, Any], batch: list[tuple[int, Any]], keep: int | None = None) -> None:
    writes = fold_batch(store.get, batch).writes
    store.update(writes if keep is None else writes[:keep])


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


def test_duplicates_are_skipped() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of(EVENTS))
    again = fold_batch(store.get, batch_of(EVENTS, first=500))
    assert again.outcomes == ["duplicate"] * len(EVENTS)
    assert again.writes == []


@pytest.mark.parametrize("kept", range(0, 5))
def test_redelivery_after_a_crash_that_kept_a_prefix_of_the_writes(kept: int) -> None:
    first, second = EVENTS[:2], EVENTS[2:]  # the second batch spans both months
    store: dict[str, Any] = {}
    apply(store, batch_of(first))
    b2 = batch_of(second, first=2)
    assert len(fold_batch(store.get, b2).writes) == 4  # 2 month rows, then 2 guard rows
    apply(store, b2, keep=kept)
    apply(store, b2)
    assert actual(store) == expected()
