"""The client-interactions fold: counts, first response, distributions; order and redelivery."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.interactions import client_key, fold_batch
from tests.tables.model import apply_writes, batch_of, crash_and_redeliver

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def ev(
    n: int, kind: str, minutes: int, score: int | None = None, client: str = "c1"
) -> ClientInteractionEvent:
    """Event ``n`` (id ``i-n``) of ``client`` of ``org``, ``minutes`` after :data:`T0`."""
    return ClientInteractionEvent(
        schema_version=1,
        event_id=f"i-{n}",
        organization_id="org",
        occurred_at=T0 + timedelta(minutes=minutes),
        event_type=kind,  # type: ignore[arg-type]
        client_id=client,
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
    "bookings": 0,
    "booked_at": None,
    "converted_at": None,
    "days_to_book": None,
    "direct_bookings": 0,
}


def apply(store: dict[str, Any], batch: list[tuple[int, Any]]) -> None:
    apply_writes(store, fold_batch(store.get, batch).writes)


def actual(store: dict[str, Any]) -> dict[str, Any]:
    values = dict(store[client_key("org", "c1")]["values"])
    values.pop("early_responses")
    values.pop("early_bookings")
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


def random_interactions(rng: random.Random, n: int) -> list[ClientInteractionEvent]:
    """Events of three clients, times in any order, with a few erasures."""
    out = []
    for i in range(n):
        kind = rng.choice(["inquiry", "response", "booked", "rating", "nps"] * 4 + ["erased"])
        score = rng.randint(1, 5) if kind == "rating" else rng.randint(0, 10)
        out.append(
            ClientInteractionEvent(
                schema_version=1,
                event_id=f"r-{i}",
                organization_id="org",
                occurred_at=T0 + timedelta(minutes=rng.randrange(20 * DAY)),
                event_type="client_erased" if kind == "erased" else kind,  # type: ignore[arg-type]
                client_id=rng.choice(["c1", "c2", "c3"]),
                score=score if kind in ("rating", "nps") else None,
            )
        )
    return out


def client_expectation(events: list[ClientInteractionEvent], client: str) -> dict[str, Any] | None:
    """A client's figures from its events after its last erasure (None: no row)."""
    mine: list[ClientInteractionEvent] = []
    for e in events:
        if e.client_id == client:
            mine = [] if e.event_type == "client_erased" else [*mine, e]
    if not mine:
        return None
    inquiries = [e.occurred_at for e in mine if e.event_type == "inquiry"]
    first_inq = min(inquiries) if inquiries else None
    answers = [
        e.occurred_at
        for e in mine
        if e.event_type == "response" and first_inq is not None and e.occurred_at >= first_inq
    ]
    first_resp = min(answers) if answers else None
    return {
        "inquiries": len(inquiries),
        "responses": sum(e.event_type == "response" for e in mine),
        "first_inquiry_at": first_inq.isoformat() if first_inq else None,
        "first_response_at": first_resp.isoformat() if first_resp else None,
        "first_response_seconds": (
            int((first_resp - first_inq).total_seconds()) if first_resp and first_inq else None
        ),
        "ratings": dict(Counter(str(e.score) for e in mine if e.event_type == "rating")),
        "nps": dict(Counter(str(e.score) for e in mine if e.event_type == "nps")),
        **booked_expectation([e for e in mine if e.client_id == client]),
    }


def client_figures(store: dict[str, Any], client: str) -> dict[str, Any] | None:
    row = store.get(client_key("org", client))
    if row is None:
        return None
    values = dict(row["values"])
    values.pop("early_responses")
    values.pop("early_bookings")
    return values


@pytest.mark.parametrize("seed", range(40))
def test_random_clients_with_erasures_survive_crashes_exactly(seed: int) -> None:
    """Three clients, erasures among their events, crashes keeping a prefix of a batch's
    writes and redeliveries from an earlier committed offset: each client's row equals its
    figures computed from its events after its last erasure."""
    rng = random.Random(seed)
    events = random_interactions(rng, 60)
    store: dict[str, Any] = {}
    crash_and_redeliver(rng, store, events, lambda get, batch: fold_batch(get, batch).writes)
    for client in ("c1", "c2", "c3"):
        assert client_figures(store, client) == client_expectation(events, client), client


# ---------------------------------------------------------------------------------------------
# booked events: conversion, direct bookings, days to book


def booked_expectation(events: list[ClientInteractionEvent]) -> dict[str, Any]:
    """The booking fields of a client, straight from the definitions (independent of the fold).

    Converted: a ``booked`` event at or after the first inquiry; direct booking: a ``booked``
    event with no inquiry at or before it; days to book: whole days from the first inquiry to
    the first converting booking.
    """
    inquiries = [e.occurred_at for e in events if e.event_type == "inquiry"]
    booked = [e.occurred_at for e in events if e.event_type == "booked"]
    first_inq = min(inquiries) if inquiries else None
    converting = [b for b in booked if first_inq is not None and b >= first_inq]
    direct = [b for b in booked if first_inq is None or b < first_inq]
    conv = min(converting) if converting else None
    days = None
    if conv is not None and first_inq is not None:
        days = int((conv - first_inq).total_seconds() // 86_400)
    return {
        "bookings": len(booked),
        "booked_at": min(booked).isoformat() if booked else None,
        "converted_at": conv.isoformat() if conv else None,
        "days_to_book": days,
        "direct_bookings": len(direct),
    }


def booking_fields(store: dict[str, Any]) -> dict[str, Any]:
    values = store[client_key("org", "c1")]["values"]
    return {
        k: values[k]
        for k in ("bookings", "booked_at", "converted_at", "days_to_book", "direct_bookings")
    }


DAY = 24 * 60
BOOKED_EVENTS = [
    ev(21, "booked", -3 * DAY),  # before every inquiry: a direct booking
    ev(22, "inquiry", 2 * DAY),
    ev(23, "booked", 5 * DAY + 7),  # converts the inquiry of day 2 … (3 days, 7 min)
    ev(24, "inquiry", -DAY - 1),  # … until this earlier inquiry arrives: 6 days and 8 min
    ev(25, "booked", 9 * DAY),
    ev(26, "response", -DAY),
]


@pytest.mark.parametrize("n", range(1, len(BOOKED_EVENTS) + 1))
def test_booked_fold_does_not_depend_on_the_order(n: int) -> None:
    events = BOOKED_EVENTS[:n]
    want = booked_expectation(events)
    for perm in itertools.permutations(events):
        store: dict[str, Any] = {}
        for i, e in enumerate(perm):  # one event per batch
            apply(store, [(i, e)])
        assert booking_fields(store) == want, [e.event_id for e in perm]
        one_batch: dict[str, Any] = {}
        apply(one_batch, batch_of(list(perm)))
        assert booking_fields(one_batch) == want


def test_booked_expectations_by_hand() -> None:
    """The full list, checked against a hand computation as well."""
    store: dict[str, Any] = {}
    apply(store, batch_of(BOOKED_EVENTS))
    assert booking_fields(store) == {
        "bookings": 3,
        "booked_at": (T0 - timedelta(days=3)).isoformat(),
        # the first inquiry is day −1 minus 1 minute; the first booking at or after it is
        # day 5 + 7 min: 6 days and 8 minutes later
        "converted_at": (T0 + timedelta(days=5, minutes=7)).isoformat(),
        "days_to_book": 6,
        "direct_bookings": 1,
    }


def test_booking_at_the_inquiry_instant_converts_and_a_lone_booking_is_direct() -> None:
    store: dict[str, Any] = {}
    apply(store, batch_of([ev(31, "booked", 0), ev(32, "inquiry", 0)]))
    assert booking_fields(store) == {
        "bookings": 1,
        "booked_at": T0.isoformat(),
        "converted_at": T0.isoformat(),
        "days_to_book": 0,
        "direct_bookings": 0,
    }
    lone: dict[str, Any] = {}
    apply(lone, batch_of([ev(33, "booked", 10), ev(34, "rating", 11, score=4)]))
    assert booking_fields(lone) == {
        "bookings": 1,
        "booked_at": (T0 + timedelta(minutes=10)).isoformat(),
        "converted_at": None,
        "days_to_book": None,
        "direct_bookings": 1,
    }


@pytest.mark.parametrize("seed", range(10))
def test_booked_redelivery_after_a_crash_counts_once(seed: int) -> None:
    rng = random.Random(seed)
    events = list(BOOKED_EVENTS)
    rng.shuffle(events)
    store: dict[str, Any] = {}
    crash_and_redeliver(rng, store, events, lambda get, batch: fold_batch(get, batch).writes)
    assert booking_fields(store) == booked_expectation(events)


def test_rows_written_before_booked_existed_read_with_zero_bookings() -> None:
    old_row = {
        "inquiries": 1,
        "responses": 0,
        "first_inquiry_at": T0.isoformat(),
        "first_response_at": None,
        "first_response_seconds": None,
        "early_responses": [],
        "ratings": {},
        "nps": {},
    }
    store: dict[str, Any] = {client_key("org", "c1"): {"values": old_row, "event_ids": ["x"]}}
    apply(store, batch_of([ev(41, "booked", 2 * DAY + 5)]))
    assert booking_fields(store) == {
        "bookings": 1,
        "booked_at": (T0 + timedelta(days=2, minutes=5)).isoformat(),
        "converted_at": (T0 + timedelta(days=2, minutes=5)).isoformat(),
        "days_to_book": 2,
        "direct_bookings": 0,
    }
