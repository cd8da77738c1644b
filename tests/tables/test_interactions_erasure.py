"""The ``client_erased`` event: the client's row is deleted (a None write), in batch order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.interactions import ClientInteractionEvent
from stream_app.tables.interactions import client_key, fold_batch
from tests.tables.test_interactions import T0
from tests.tables.test_interactions import ev as interaction


def ev(n: int, kind: str, client: str, minutes: int = 0) -> ClientInteractionEvent:
    return interaction(n, kind, minutes, client=client)


def apply(table: dict[str, Any], batch: list[ClientInteractionEvent]) -> list[str]:
    """Fold ``batch`` into ``table`` as the agent writes it (None deletes); the outcomes."""
    result = fold_batch(table.get, list(enumerate(batch)))
    for key, value in result.writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return result.outcomes


def test_erasure_deletes_the_row_of_the_client_and_only_it() -> None:
    table: dict[str, Any] = {}
    apply(table, [ev(1, "inquiry", "c1"), ev(2, "response", "c1", 5), ev(3, "inquiry", "c2")])
    assert set(table) == {client_key("org", "c1"), client_key("org", "c2")}
    outcomes = apply(table, [ev(4, "client_erased", "c1")])
    assert outcomes == ["erased"]
    assert set(table) == {client_key("org", "c2")}
    assert table[client_key("org", "c2")]["values"]["inquiries"] == 1


def test_in_one_batch_events_before_the_erasure_vanish_and_later_ones_count() -> None:
    table: dict[str, Any] = {}
    batch = [
        ev(1, "inquiry", "c1"),
        ev(2, "client_erased", "c1"),
        ev(3, "inquiry", "c1", 60),  # the client comes back after the erasure
    ]
    result = fold_batch(table.get, list(enumerate(batch)))
    assert result.outcomes == ["counted", "erased", "counted"]
    # the rows folded before the erasure are not written at all; tombstones, then new rows
    assert [k for k, v in result.writes] == [client_key("org", "c1")] * 2
    assert result.writes[0][1] is None
    apply(table, batch)
    assert table[client_key("org", "c1")]["values"]["inquiries"] == 1
    assert (
        table[client_key("org", "c1")]["values"]["first_inquiry_at"]
        == (T0 + timedelta(minutes=60)).isoformat()
    )
    assert table[client_key("org", "c1")]["o"] == 2  # the offset of the comeback
    assert [c.row.key for c in result.changes] == [client_key("org", "c1")]


def test_a_redelivered_batch_with_an_erasure_ends_in_the_same_state() -> None:
    table: dict[str, Any] = {}
    rating = interaction(2, "rating", 0, score=4, client="c2")
    batch = [ev(1, "inquiry", "c1"), rating, ev(3, "client_erased", "c1")]
    apply(table, batch)
    once = dict(table)
    apply(table, batch)  # at-least-once: the whole batch again
    assert table == once
    assert client_key("org", "c1") not in table


@pytest.mark.parametrize("extra", [{"score": 3}, {"channel": "email"}, {"inquiry_id": "i1"}])
def test_an_erasure_event_carries_nothing_but_the_client(extra: dict[str, Any]) -> None:
    raw = (
        b'{"schema_version":1,"event_id":"x","organization_id":"org",'
        b'"occurred_at":"2026-02-01T09:00:00Z","event_type":"client_erased","client_id":"c1",'
        + f'"{next(iter(extra))}":'.encode()
        + (b"3" if "score" in extra else f'"{next(iter(extra.values()))}"'.encode())
        + b"}"
    )
    with pytest.raises(EventValidationError) as err:
        decode_event(raw, ClientInteractionEvent)
    assert err.value.field == f"$.{next(iter(extra))}"
