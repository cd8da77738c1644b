"""The client-interactions fold: counts, first response, distributions; order and redelivery."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.interactions import client_key, fold_batch

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def ev(n: int, kind: str, minutes: int, score: int | None = None) -> ClientInteractionEvent:
    return ClientInteractionEvent(
        schema_version=1,
        event_id=f"i-{n}",
        organization_id="org",
        occurred_at=T0 + timedelta(minutes=minutes),
        event_type=kind,  # type: ignore[arg-type]
        client_id="c1",
        score=score,
    )


EVENTS = [
    ev(1, "response", -30),  # before any inquiry: does not answer it
    ev(2, "inquiry", 10),
    ev(3, "response", 95),
    ev(4, "inquiry", 0),  # the first inquiry arrives late
    ev(5, "response", 5),  # the first response after the first inquiry: 5 min
    ev(6, "rating", 200, score=5),
    ev(7, "rating", 210, score=3),
    ev(8, "rating", 220, score=5),
    ev(9, "nps", 230, score=10),
    ev(10, "nps", 240, score=6),
    ev(11, "nps", 250, score=0),
    ev(12, "response", 2),  # now the first response: 2 min
]

EXPECTED = {
    "inquiries": 2,
    "responses": 4,
    "first_inquiry_at": T0.isoformat(),
    "first_response_at": (T0 + timedelta(minutes=2)).isoformat(),
    "first_response_seconds": 120,
    "ratings": {"5": 2, "3": 1},
    "nps": {"10": 1, "6": 1, "0": 1},
}


def batch_of(events: list[ClientInteractionEvent], first: int = 0) -> list[tuple[int, Any]]:
    return [(first + i, e) for i, e in enumerate(events)]


def apply(store: dict[str, Any], batch: list[tuple[int, Any]], keep: int | None = None) -> None:
    writes = fold_batch(store.get, batch).writes
    store.update(writes if keep is None else writes[:keep])


def actual(store: dict[str, Any]) -> dict[str, Any]:
    values = dict(store[client_key("org", "c1")]["values"])
    values.pop("early_responses")
    return values


def test_every_event_counted_once() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of(EVENTS))
    assert actual(store) == EXPECTED


@pytest.mark.parametrize("seed", range(5))
def test_the_result_does_not_depend_on_the_order(seed: int) -> None:
    shuffled = list(EVENTS)
    random.Random(seed).shuffle(shuffled)
    store: dict[str, Any] = {}
    for i, e in enumerate(shuffled):  # one event per batch
        apply(store, [(i, e)])
    assert actual(store) == EXPECTED


def test_no_first_response_without_an_answering_response() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of([ev(1, "response", -30), ev(2, "inquiry", 0)]))
    values = store[client_key("org", "c1")]["values"]
    assert values["first_response_seconds"] is None


def test_duplicates_are_skipped() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of(EVENTS))
    again = fold_batch(store.get, batch_of(EVENTS, first=100))
    assert again.outcomes == ["duplicate"] * len(EVENTS)


@pytest.mark.parametrize("kept", range(0, 3))
def test_redelivery_after_a_crash_that_kept_a_prefix_of_the_writes(kept: int) -> None:
    first, second = EVENTS[:5], EVENTS[5:]
    store: dict[str, Any] = {}
    apply(store, batch_of(first))
    b2 = batch_of(second, first=5)
    apply(store, b2, keep=kept)
    apply(store, b2)
    assert actual(store) == EXPECTED
