"""Poison events: the events of a batch on which the fold itself fails.

The decode sets aside what is malformed (:mod:`stream_app.agents.batch`); an event that passes
it and still makes the fold raise (a bug of ours meeting an input nobody foresaw: the bad
UTF-8 that msgspec reports as ``UnicodeDecodeError`` was one) would otherwise stop its
partition's fold for every tenant on it, the batch read again and failing again for ever.
:func:`isolate` finds such events with the fold's pure part (``probe``: the rows a batch
would write, computed and thrown away), so the batch loop can dead-letter them with the
error and fold the rest: a poison event costs its own count, not its partition's.

The search is a bisection over prefixes of the batch: the shortest failing prefix ends with
an event that fails in the context of the events before it (so a failure that needs an
earlier event of the batch is found too), which is taken out, and the rest probed again.
``log2(n)`` probes of at most ``n`` events per poison event, only when a fold has failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

MAX_POISONED = 100
"""Most events one batch may lose this way, and never more than half of it (at least one):
past that the fold's error is raised, nothing is dead-lettered and the batch is read again
(a fold failing on so many events is broken, not poisoned: a crash is what an operator must
see, and the events wait for the fix instead of filling the dead-letter topic)."""


def isolate(
    probe: Callable[[Sequence[T]], object], batch: Sequence[T], limit: int = MAX_POISONED
) -> tuple[list[T], list[tuple[T, Exception]]]:
    """``(the events of batch that fold, [(poison event, the error it raised)])``.

    Args:
        probe: folds a sequence of events and discards the result; raises as the fold
            would. Must be deterministic, free of side effects, and pass on no events.
        batch: the events, in offset order.
        limit: most poison events taken out (and at most half of the batch, at least one).

    Raises:
        Exception: the error of the first probe of the whole batch, when more events than
            that would be taken out.
    """
    kept = list(batch)
    bound = min(limit, max(1, len(kept) // 2))
    poisoned: list[tuple[T, Exception]] = []
    first: Exception | None = None
    while True:
        try:
            probe(kept)
        except Exception as exc:  # noqa: BLE001 - any error of the fold is the question
            whole = exc
            first = first or exc
        else:
            return kept, poisoned
        if len(poisoned) >= bound:
            raise first
        # kept[:lo] folds (the empty prefix does), kept[:hi] fails: narrow to hi == lo + 1,
        # the shortest failing prefix, whose last event is to blame
        lo, hi, blamed = 0, len(kept), whole
        while hi - lo > 1:
            mid = (lo + hi) // 2
            try:
                probe(kept[:mid])
            except Exception as exc:  # noqa: BLE001
                hi, blamed = mid, exc
            else:
                lo = mid
        poisoned.append((kept.pop(hi - 1), blamed))
