"""Offset bookkeeping of the input topics: repeated acks, holes at the head, their repair.

The bookkeeping is faust's per-partition lists, held here as plain data (no broker); the
end-to-end behaviour is in tests/e2e/test_exactly_once.py.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiokafka.errors import IllegalStateError
from faust.types import TP
from intervaltree import IntervalTree  # type: ignore[import-untyped]

from stream_app.offsets import HoleRepair, head_hole, new_offset, record_gap
from stream_app.topics import REPORT_RESULTS, WEDDING_BOOKINGS


class Bookkeeping:
    """The attributes of faust's consumer that the offset rule reads, and a recording seek."""

    def __init__(self, tp: TP, acked: list[int], committed: int | None) -> None:
        self._acked: dict[TP, list[int]] = defaultdict(list, {tp: list(acked)})
        self._acked_index: dict[TP, set[int]] = defaultdict(set, {tp: set(acked)})
        self._committed_offset: dict[TP, int | None] = defaultdict(lambda: None, {tp: committed})
        self._gap: dict[TP, Any] = defaultdict(IntervalTree)
        self._read_offset: dict[TP, int | None] = {}
        self.sought: list[tuple[TP, int]] = []
        self.assigned: set[TP] = {tp}
        self.ends: dict[TP, int] = {}

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)

    async def seek(self, tp: TP, offset: int) -> None:
        if tp not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.sought.append((tp, offset))

    def assignment(self) -> set[TP]:
        return set(self.assigned)


TP_BOOKINGS = TP(WEDDING_BOOKINGS, 0)


def test_repeated_acks_do_not_slow_the_commit() -> None:
    state = Bookkeeping(TP_BOOKINGS, [2666, 2667, 2667, 2668, 2668, 2669], 2667)
    assert new_offset(state, TP_BOOKINGS) == 2670
    assert state._acked[TP_BOOKINGS] == [] and state._acked_index[TP_BOOKINGS] == set()


def test_a_hole_at_the_head_commits_nothing() -> None:
    state = Bookkeeping(TP_BOOKINGS, [3228, 3229, 3230], 3214)
    assert head_hole(state, TP_BOOKINGS) == (3214, 3228)
    assert new_offset(state, TP_BOOKINGS) is None
    # even one missing offset: faust itself would commit past it
    state = Bookkeeping(TP_BOOKINGS, [3215, 3216], 3214)
    assert new_offset(state, TP_BOOKINGS) is None


def test_a_hole_that_faust_recorded_as_a_gap_is_not_a_hole() -> None:
    state = Bookkeeping(TP_BOOKINGS, [3228, 3229], 3214)
    state._gap[TP_BOOKINGS].addi(3214, 3228)  # offsets without messages (e.g. markers)
    assert head_hole(state, TP_BOOKINGS) is None
    assert new_offset(state, TP_BOOKINGS) == 3230


async def test_offsets_faust_skips_on_an_input_topic_are_never_committed() -> None:
    """The SIGKILL test's loss: faust drained 3345 while its read position was 2775, recorded
    2776..3344 as a gap and committed 3345 with those messages never folded."""
    state = Bookkeeping(TP_BOOKINGS, [2770, 2771, 2772, 2773, 2774, 2775], 2770)
    await record_gap(state, TP_BOOKINGS, 2776, 3345)
    state._acked[TP_BOOKINGS].append(3345)
    state._acked_index[TP_BOOKINGS].add(3345)
    assert not state._gap[TP_BOOKINGS]
    assert new_offset(state, TP_BOOKINGS) == 2776  # the run up to the skipped offsets only
    state._committed_offset[TP_BOOKINGS] = 2776
    assert head_hole(state, TP_BOOKINGS) == (2776, 3345)  # repaired by seeking back
    assert new_offset(state, TP_BOOKINGS) is None


async def test_other_topics_keep_fausts_gaps() -> None:
    tp = TP(REPORT_RESULTS, 0)
    state = Bookkeeping(tp, [5], 5)
    state._read_offset = {}
    await record_gap(state, tp, 6, 9)  # faust's call: (read + 1, offset drained)
    state._acked[tp].append(9)
    assert new_offset(state, tp) == 10


def test_other_topics_keep_fausts_rule() -> None:
    tp = TP(REPORT_RESULTS, 0)
    state = Bookkeeping(tp, [5, 6, 8], 5)
    assert new_offset(state, tp) == 7


async def test_a_lasting_hole_is_repaired_by_seeking_back() -> None:
    state = Bookkeeping(TP_BOOKINGS, [3228, 3229], 3214)
    repair = HoleRepair(after_s=10)
    assert await repair.check(state, now=100.0) == []  # first seen
    assert await repair.check(state, now=105.0) == []  # not yet lasting
    assert await repair.check(state, now=110.0) == [TP_BOOKINGS]
    assert state.sought == [(TP_BOOKINGS, 3214)]
    # the missing offsets arrive: no hole, nothing more to do
    state._acked[TP_BOOKINGS] = list(range(3214, 3230))
    assert await repair.check(state, now=200.0) == []
    assert new_offset(state, TP_BOOKINGS) == 3230


async def test_a_partition_revoked_meanwhile_is_not_sought() -> None:
    state = Bookkeeping(TP_BOOKINGS, [3228, 3229], 3214)
    repair = HoleRepair(after_s=10)
    await repair.check(state, now=100.0)
    state.assigned = set()  # revoked by a rebalance
    assert await repair.check(state, now=120.0) == []
    assert state.sought == []


async def test_a_stalled_tail_is_repaired_by_seeking_back() -> None:
    # after a rebalance: 6130 committed, the topic ends at 6131, the stream last saw 6126
    state = Bookkeeping(TP_BOOKINGS, [], 6130)
    state.ends[TP_BOOKINGS] = 6131
    state._read_offset[TP_BOOKINGS] = 6126
    repair = HoleRepair(after_s=10)
    assert await repair.check(state, now=100.0) == []  # first seen
    assert await repair.check(state, now=105.0) == []  # not yet lasting
    assert await repair.check(state, now=110.0) == [TP_BOOKINGS]
    assert state.sought == [(TP_BOOKINGS, 6130)]


async def test_a_tail_being_processed_or_caught_up_is_left_alone() -> None:
    state = Bookkeeping(TP_BOOKINGS, [], 6130)
    state.ends[TP_BOOKINGS] = 6131
    repair = HoleRepair(after_s=10)
    for read in (6130, 6129):  # delivered to the stream, or the last read was committed
        state._read_offset[TP_BOOKINGS] = read  # (the partition may be paused meanwhile)
        for now in (100.0, 110.0, 120.0):
            assert await repair.check(state, now=now) == []
    state._read_offset[TP_BOOKINGS] = 6126
    state.ends[TP_BOOKINGS] = 6130  # caught up: committed == end
    for now in (130.0, 140.0, 150.0):
        assert await repair.check(state, now=now) == []
    state.ends[TP_BOOKINGS] = 6131
    state._committed_offset[TP_BOOKINGS] = 6130
    assert await repair.check(state, now=160.0) == []
    state._committed_offset[TP_BOOKINGS] = 6131  # the commit moved on: not a stall
    state.ends[TP_BOOKINGS] = 6140
    assert await repair.check(state, now=175.0) == []
    assert state.sought == []


async def test_a_tail_without_progress_at_the_committed_offset_is_repaired_later() -> None:
    """The CI case: 14 messages behind after a rebalance, nothing acknowledged, the read
    position at the committed offset, for minutes: after 3 × 10 s it is sought back."""
    state = Bookkeeping(TP_BOOKINGS, [], 6127)
    state.ends[TP_BOOKINGS] = 6141
    state._read_offset[TP_BOOKINGS] = 6127
    repair = HoleRepair(after_s=10)
    for now in (100.0, 110.0, 120.0, 129.0):
        assert await repair.check(state, now=now) == []
    assert await repair.check(state, now=130.0) == [TP_BOOKINGS]
    assert state.sought == [(TP_BOOKINGS, 6127)]
    # progress restarts the clock
    state._read_offset[TP_BOOKINGS] = 6128
    assert await repair.check(state, now=131.0) == []
    state._committed_offset[TP_BOOKINGS] = 6128
    assert await repair.check(state, now=150.0) == []
    assert await repair.check(state, now=175.0) == []
    assert state.sought == [(TP_BOOKINGS, 6127)]
