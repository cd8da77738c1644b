"""Poison events: the group testing finds exactly the events the fold fails on alone."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stream_app.agents.poison import CHUNK, MAX_POISONED, isolate


class Probe:
    """A fold that fails on the events in ``bad``, and on an event ``n`` when ``n - 1`` came
    before it in the same batch when ``pairs`` (a failure that needs its context)."""

    def __init__(self, bad: set[int], pairs: bool = False) -> None:
        self.bad, self.pairs = bad, pairs
        self.calls = self.folded = 0

    def __call__(self, events: Sequence[int]) -> None:
        self.calls += 1
        self.folded += len(events)
        seen: set[int] = set()
        for n in events:
            if n in self.bad:
                raise ValueError(f"event {n}")
            if self.pairs and n % 100 == 1 and n - 1 in seen:
                raise KeyError(n)
            seen.add(n)


def test_a_clean_batch_is_probed_once_and_kept_whole() -> None:
    probe = Probe(set())
    assert isolate(probe, list(range(500))) == (list(range(500)), [])
    assert probe.calls == 1


@pytest.mark.parametrize(
    "bad", [{0}, {499}, {17}, {3, 4}, {0, 250, 499}, {1, 2, 3}, set(range(0, 500, 7))]
)
def test_each_poison_event_is_taken_out_with_its_own_error(bad: set[int]) -> None:
    probe = Probe(bad)
    kept, poisoned = isolate(probe, list(range(500)))
    assert kept == [n for n in range(500) if n not in bad]
    assert [n for n, _ in poisoned] == sorted(bad)
    assert [str(e) for _, e in poisoned] == [f"event {n}" for n in sorted(bad)]
    # one whole probe, one per chunk, one per event of a failing chunk, one of the rest
    chunks = [list(range(500))[i : i + CHUNK] for i in range(0, 500, CHUNK)]
    failing = [c for c in chunks if bad & set(c)]
    assert probe.calls == 1 + len(chunks) + sum(len(c) for c in failing) + 1
    assert probe.folded == 500 + 500 + sum(len(c) for c in failing) + (500 - len(bad))


def test_most_of_a_small_batch_may_be_poison_and_the_rest_still_folds() -> None:
    kept, poisoned = isolate(Probe({0, 1}), [0, 1, 2])
    assert kept == [2] and [n for n, _ in poisoned] == [0, 1]
    kept, poisoned = isolate(Probe({7}), [7])
    assert kept == [] and [n for n, _ in poisoned] == [7]


def test_a_failure_that_needs_an_earlier_event_is_blamed_on_none_and_raised() -> None:
    with pytest.raises(KeyError):
        isolate(Probe(set(), pairs=True), list(range(300)))
    # with a poison of its own besides: still raised (the rest fails), nothing taken out
    with pytest.raises(KeyError):
        isolate(Probe({5}, pairs=True), list(range(300)))


def test_more_than_the_limit_raises_the_first_error() -> None:
    batch = list(range(3 * (MAX_POISONED + 1)))
    with pytest.raises(ValueError, match="event 0"):
        isolate(Probe(set(range(0, len(batch), 3))), batch)
    kept, poisoned = isolate(Probe(set(range(0, 30, 3))), batch, limit=10)
    assert len(poisoned) == 10 and kept == [n for n in batch if n >= 30 or n % 3]
