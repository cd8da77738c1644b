"""The committable offset of in-order topics: robust to double acks and lost runs."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from stream_app.offsets import new_offset_in_order
from stream_app.topics import REPORT_RESULTS, WEDDING_BOOKINGS


def bookkeeping(topic: str, acked: list[int], committed: int | None) -> tuple[Any, TP]:
    """faust's per-partition lists as the consumer holds them (plain data, no broker)."""
    tp = TP(topic, 0)
    state = SimpleNamespace(
        _acked=defaultdict(list, {tp: list(acked)}),
        _acked_index=defaultdict(set, {tp: set(acked)}),
        _committed_offset=defaultdict(lambda: None, {tp: committed}),
        _gap=defaultdict(dict),
    )
    return state, tp


def test_double_acks_do_not_slow_the_commit() -> None:
    state, tp = bookkeeping(WEDDING_BOOKINGS, [2666, 2667, 2667, 2668, 2668, 2669], 2667)
    assert new_offset_in_order(state, tp) == 2670
    assert state._acked[tp] == [] and state._acked_index[tp] == set()
    assert new_offset_in_order(state, tp) is None  # nothing new acknowledged since


def test_a_hole_at_the_head_does_not_stop_commits_for_ever() -> None:
    state, tp = bookkeeping(WEDDING_BOOKINGS, [3228, 3229, 3230], 3214)
    assert new_offset_in_order(state, tp) == 3231


def test_nothing_beyond_the_committed_offset() -> None:
    state, tp = bookkeeping(WEDDING_BOOKINGS, [10, 11], 12)
    assert new_offset_in_order(state, tp) is None


def test_other_topics_keep_fausts_rule_and_stop_at_a_gap() -> None:
    # the delivery agent's actors run concurrently: 7 is still in flight, commit up to it
    state, tp = bookkeeping(REPORT_RESULTS, [5, 6, 8], 5)
    assert new_offset_in_order(state, tp) == 7
