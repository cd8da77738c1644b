"""Shared by the fold tests: random booking streams, an independent model of what folding them
once gives, and the batch loop's combination of dedupe and fold (without Kafka).

The model does not call the fold: it walks the stream in offset order, keeps each
organisation's watermark (the greatest ``occurred_at`` so far) and adds every event to the
rows it belongs to, leaving out the windows closed for it (``watermark >= end + grace``, and
the week and month of an event late for its local day).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from stream_app.schemas.bookings import BookingEvent
from stream_app.tables.bookings import WindowPolicy
from stream_app.tables.closing import OpenWindows
from stream_app.tables.dedupe import Dedupe, Verdict
from stream_app.tables.windows import WINDOW_GRAINS, window_of

GRACE = timedelta(minutes=30)
ZONES = {"a": ZoneInfo("Europe/London"), "b": ZoneInfo("America/New_York")}
START = datetime(2026, 3, 28, 20, tzinfo=UTC)  # London springs forward on 29 March

E = TypeVar("E")

BOOKING = BookingEvent(
    schema_version=1,
    event_id="e-0",
    organization_id="org",
    occurred_at=START,
    event_type="booking_created",
    booking_id="b-0",
    venue_id="v1",
    service_date=date(2026, 9, 5),
    amount_minor=100,
    currency="EUR",
)
"""A booking of 1.00 EUR at ``v1`` for tests to vary (:func:`msgspec.structs.replace`)."""


def zone_of(org: str) -> ZoneInfo:
    return ZONES[org]


def watermark_key(org: str) -> str:
    return f"~watermark/0/{org}"


def policy(index: OpenWindows | None = None) -> WindowPolicy:
    """The window policy of the tests (closing through ``index`` when given)."""
    return WindowPolicy(zone_of, GRACE, watermark_key, None if index is None else index.closing)


def random_bookings(rng: random.Random, n: int, prefix: str = "e") -> list[BookingEvent]:
    """``n`` events of two organisations, their clocks moving by minutes to a day, about one
    in five sent minutes to nine days behind their organisation's clock; around London's
    spring change, a month end and ISO week ends."""
    clock = {"a": START, "b": START}
    out = []
    for i in range(n):
        org = rng.choice("ab")
        clock[org] += timedelta(minutes=rng.choice([0, 1, 7, 30, 95, 400, 1500]))
        at = clock[org]
        if rng.random() < 0.2:
            at -= timedelta(minutes=rng.choice([5, 35, 70, 25 * 60, 9 * 24 * 60]))
        cancel = rng.random() < 0.2
        out.append(
            BookingEvent(
                schema_version=1,
                event_id=f"{prefix}-{i}",
                organization_id=org,
                occurred_at=at,
                event_type="booking_cancelled" if cancel else "booking_created",
                booking_id=f"b-{i}",
                venue_id=rng.choice(["v1", "v2"]),
                service_date=date(2026, 6, 1) + timedelta(days=rng.randrange(45)),
                amount_minor=rng.randint(1, 90_000),
                currency="GBP" if rng.random() < 0.2 else "EUR",
                lead_time_days=None if rng.random() < 0.2 else rng.randint(0, 400),
            )
        )
    return out


def empty_totals() -> dict[str, Any]:
    return {
        "bookings": 0,
        "cancellations": 0,
        "booked_minor": {},
        "cancelled_minor": {},
        "lead_time_days_sum": 0,
        "lead_time_bookings": 0,
    }


def add_event(t: dict[str, Any], ev: BookingEvent) -> None:
    """The definitions of the module docstring of stream_app.tables.bookings, restated."""
    if ev.event_type == "booking_created":
        t["bookings"] += 1
        t["booked_minor"][ev.currency] = t["booked_minor"].get(ev.currency, 0) + ev.amount_minor
        if ev.lead_time_days is not None:
            t["lead_time_days_sum"] += ev.lead_time_days
            t["lead_time_bookings"] += 1
    else:
        t["cancellations"] += 1
        t["cancelled_minor"][ev.currency] = (
            t["cancelled_minor"].get(ev.currency, 0) + ev.amount_minor
        )


def expected_rows(
    events: Sequence[tuple[int, BookingEvent]], windows: bool = True
) -> tuple[dict[str, dict[str, Any]], dict[int, list[str]]]:
    """``(rows, late)`` of folding ``(offset, event)`` once, in offset order: rows as
    ``{key: {"totals": ..., "o": last offset added}}``, and per late event's offset the window
    grains it missed."""
    rows: dict[str, dict[str, Any]] = {}
    late: dict[int, list[str]] = {}
    marks: dict[str, datetime] = {}

    def put(key: str, offset: int, ev: BookingEvent) -> None:
        row = rows.setdefault(key, {"totals": empty_totals(), "o": -1})
        add_event(row["totals"], ev)
        row["o"] = offset

    for offset, ev in events:
        org, venue = ev.organization_id, ev.venue_id
        put(f"{org}/{venue}/day/{ev.service_date.isoformat()}", offset, ev)
        put(f"{org}/{venue}/month/{ev.service_date.isoformat()[:7]}", offset, ev)
        if not windows:
            continue
        mark = marks.get(org)
        missed: list[str] = []
        for grain in WINDOW_GRAINS:
            w = window_of(grain, ev.occurred_at, ZONES[org])
            closed = mark is not None and mark >= w.end + GRACE
            if closed or (grain in ("event_week", "event_month") and "event_day" in missed):
                missed.append(grain)
            else:
                put(f"{org}/{venue}/{grain}/{w.label}", offset, ev)
        if missed:
            late[offset] = missed
        marks[org] = ev.occurred_at if mark is None else max(mark, ev.occurred_at)
    return rows, late


def split(rng: random.Random, start: int, end: int, most: int = 12) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive random ``(first, stop)`` batches."""
    out = []
    while start < end:
        stop = min(end, start + rng.randint(1, most))
        out.append((start, stop))
        start = stop
    return out


def batch_of(events: Sequence[E], first: int = 0) -> list[tuple[int, E]]:
    """``events`` at offsets ``first``, ``first + 1``, … (a partition's batch)."""
    return [(first + i, e) for i, e in enumerate(events)]


def apply_writes(store: dict[str, Any], writes: Iterable[tuple[str, Any]]) -> None:
    """Write rows in order as the changelog and RocksDB do (``None`` deletes)."""
    for key, value in writes:
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value


def data_rows(store: dict[str, Any]) -> dict[str, Any]:
    """The rows that are not watermarks or dedupe records."""
    return {k: v for k, v in store.items() if not k.startswith("~")}


R = TypeVar("R")


def screen_and_fold(
    store: dict[str, Any],
    batch: Sequence[tuple[int, int, E]],
    fold: Callable[[Callable[[str], Any], list[tuple[int, E]]], R],
    horizon_ms: int,
    writes_of: Callable[[R], list[tuple[str, Any]]],
) -> tuple[list[Verdict], R, list[tuple[str, Any]]]:
    """One batch the way ``stream_app.agents.batch.BatchStream.process`` combines dedupe and
    fold: ``(offset, arrival ms, event)`` checked one by one, duplicates dropped, the rest
    folded; the dedupe records written before the fold's rows. Returns the verdicts, the
    fold's result and the batch's writes (not applied)."""
    dedupe = Dedupe(store.get, horizon_ms)
    verdicts: list[Verdict] = []
    kept: list[tuple[int, E]] = []
    for offset, arrival, ev in batch:
        verdict = dedupe.check(f"{ev.organization_id}/{ev.event_id}", offset, arrival)  # type: ignore[attr-defined]
        verdicts.append(verdict)
        if verdict != "duplicate":
            kept.append((offset, ev))
    result = fold(store.get, kept)
    writes: list[tuple[str, Any]] = [*dedupe.writes(), *writes_of(result)]
    return verdicts, result, writes


def crash_and_redeliver(
    rng: random.Random,
    store: dict[str, Any],
    events: list[Any],
    writes_of: Callable[[Callable[[str], Any], list[tuple[int, Any]]], list[tuple[str, Any]]],
) -> None:
    """Fold ``events`` (offsets 0..) into ``store`` in random batches; up to three crashes
    keep a random prefix of their batch's writes (the changelog is an ordered log), each
    followed by a redelivery from the start of a random earlier batch (the committed
    offset)."""
    boundaries, offset, crashes = [0], 0, 0
    while offset < len(events):
        stop = min(len(events), offset + rng.randint(1, 8))
        writes = writes_of(store.get, [(o, events[o]) for o in range(offset, stop)])
        if crashes < 3 and rng.random() < 0.3:
            apply_writes(store, writes[: rng.randint(0, len(writes))])
            crashes += 1
            offset = rng.choice([b for b in boundaries if b <= offset])
        else:
            apply_writes(store, writes)
            offset = stop
            boundaries.append(offset)
