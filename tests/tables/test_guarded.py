"""Exactly-once folding of a partition's batch (:mod:`stream_app.tables.guarded`), through each
of the three folds built on it (tests/tables/folds.py): a batch delivered again at its own
offsets writes nothing, and crashes that kept a prefix of a batch's writes, each followed by a
redelivery from an earlier committed offset, end with every event counted once."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.tables.folds import CASES, FoldCase
from tests.tables.model import apply_writes, batch_of, crash_and_redeliver


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_batch_delivered_again_at_its_own_offsets_changes_nothing(case: FoldCase) -> None:
    store: dict[str, Any] = {}
    apply_writes(store, case.fold_batch(store.get, batch_of(case.events)).writes)
    assert max(row["o"] for row in store.values()) == len(case.events) - 1
    again = case.fold_batch(store.get, batch_of(case.events))
    assert again.outcomes == ["redelivered"] * len(case.events)
    assert again.writes == [] and again.changes == []


@pytest.mark.parametrize(
    ("case", "seed"),
    [(case, seed) for case in CASES for seed in range(case.seeds)],
    ids=lambda v: v.name if isinstance(v, FoldCase) else str(v),
)
def test_redelivery_after_a_crash_that_kept_a_prefix_of_the_writes(
    case: FoldCase, seed: int
) -> None:
    """Batches one after the other; up to three crashes keeping a random prefix of their
    batch's writes, each followed by a redelivery from the start of a random earlier batch
    (the committed offset), in other batches."""
    rng = random.Random(seed)
    events = list(case.events)
    rng.shuffle(events)
    store: dict[str, Any] = {}
    crash_and_redeliver(rng, store, events, lambda get, batch: case.fold_batch(get, batch).writes)
    assert case.actual(store) == case.expected()
