"""Poison events: the bisection finds exactly the events the fold fails on."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from stream_app.agents.poison import MAX_POISONED, isolate


class Probe:
    """A fold that fails on the events in ``bad``, and on an event ``n`` when ``n - 1`` came
    before it in the same batch when ``pairs`` (a failure that needs its context)."""

    def __init__(self, bad: set[int], pairs: bool = False) -> None:
        self.bad, self.pairs, self.calls = bad, pairs, 0

    def __call__(self, events: Sequence[int]) -> None:
        self.calls += 1
        seen: set[int] = set()
        for n in events:
            if n in self.bad:
                raise ValueError(f"event {n}")
            if self.pairs and n % 100 == 1 and n - 1 in seen:
                raise KeyError(n)
            seen.add(n)


def test_a_clean_batch_is_probed_once_and_kept_whole() -> None:
    probe = Probe(set())
    assert isolate(probe, list(range(50))) == (list(range(50)), [])
    assert probe.calls == 1


@pytest.mark.parametrize("bad", [{0}, {49}, {17}, {3, 4}, {0, 25, 49}])
def test_each_poison_event_is_taken_out_with_its_own_error(bad: set[int]) -> None:
    probe = Probe(bad)
    kept, poisoned = isolate(probe, list(range(50)))
    assert kept == [n for n in range(50) if n not in bad]
    assert [n for n, _ in poisoned] == sorted(bad)
    assert [str(e) for _, e in poisoned] == [f"event {n}" for n in sorted(bad)]
    # log2(50) probes and a whole-batch probe per poison event, and a last whole probe
    assert probe.calls <= len(bad) * 8 + 1


def test_a_failure_that_needs_an_earlier_event_blames_the_later_one() -> None:
    kept, poisoned = isolate(Probe(set(), pairs=True), list(range(300)))
    assert [n for n, _ in poisoned] == [1, 101, 201]
    assert all(isinstance(e, KeyError) for _, e in poisoned)
    assert kept == [n for n in range(300) if n not in (1, 101, 201)]


def test_a_fold_failing_on_more_than_half_the_batch_raises_and_takes_nothing_out() -> None:
    with pytest.raises(ValueError, match="event 1"):
        isolate(Probe({1, 2, 3}), [0, 1, 2, 3])
    # one event alone may be poison
    kept, poisoned = isolate(Probe({7}), [7])
    assert kept == [] and [n for n, _ in poisoned] == [7]


def test_more_than_the_limit_raises() -> None:
    bad = set(range(0, 2 * (MAX_POISONED + 1), 2))
    batch = list(range(2 * (MAX_POISONED + 1) + 10))
    with pytest.raises(ValueError):
        isolate(Probe(bad), batch)
    kept, poisoned = isolate(Probe(set(range(0, 20, 2))), batch, limit=10)
    assert len(poisoned) == 10 and kept == [n for n in batch if n >= 20 or n % 2]
