"""Poison events: the events of a batch on which the fold itself fails.

The decode sets aside what is malformed (:mod:`stream_app.agents.batch`); an event that passes
it and still makes the fold raise (a bug of ours meeting an input nobody foresaw: the bad
UTF-8 that msgspec reports as ``UnicodeDecodeError`` was one) would otherwise stop its
partition's fold for every tenant on it, the batch read again and failing again for ever.
:func:`isolate` finds such events with the fold's pure part (``probe``: the rows a batch
would write, computed and thrown away), so the batch loop can dead-letter them with the
error and fold the rest: a poison event costs its own count, not its partition's.

The search is group testing: the batch is probed in chunks of :data:`CHUNK` events, and the
events of a failing chunk one by one; an event that fails on its own is poison. That costs
about one fold of the batch plus :data:`CHUNK` single-event probes per poison event (a
20,000-event batch with 100 poison events: 313 chunk probes and 6,400 single ones), only
after a fold has failed. A failure that needs several events of the batch together is not
blamed on any of them: the fold's error is raised, the agent stops, and the batch is read
again from the committed offset (the partition waits for a fix; nothing after it is folded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

MAX_POISONED = 100
"""Most events one batch may lose this way: past that the fold's error is raised and nothing
is dead-lettered (a fold failing on so many events is broken, not poisoned; the events wait
for the fix instead of filling the dead-letter topic)."""

CHUNK = 64
"""Events per probe in the first pass of :func:`isolate`."""


def isolate(
    probe: Callable[[Sequence[T]], object], batch: Sequence[T], limit: int = MAX_POISONED
) -> tuple[list[T], list[tuple[T, Exception]]]:
    """``(the events of batch that fold, [(poison event, the error it raised alone)])``, both
    in batch order.

    Args:
        probe: folds a sequence of events and discards the result; raises as the fold
            would. Must be deterministic and free of side effects.
        batch: the events, in offset order.
        limit: most poison events taken out.

    Raises:
        Exception: ``first``, the error of the first probe of the whole batch, when more than
            ``limit`` events fail on their own, or when the batch without them still fails
            (a failure no single event can be blamed for).
    """
    events = list(batch)
    try:
        probe(events)
    except Exception as exc:  # noqa: BLE001 - any error of the fold is the question
        first = exc
    else:
        return events, []
    kept: list[T] = []
    poisoned: list[tuple[T, Exception]] = []
    for start in range(0, len(events), CHUNK):
        chunk = events[start : start + CHUNK]
        try:
            probe(chunk)
        except Exception:  # noqa: BLE001
            pass
        else:
            kept.extend(chunk)
            continue
        for event in chunk:
            try:
                probe([event])
            except Exception as exc:  # noqa: BLE001
                poisoned.append((event, exc))
                if len(poisoned) > limit:
                    raise first from None
            else:
                kept.append(event)
    if not poisoned:
        raise first
    try:
        probe(kept)
    except Exception:  # noqa: BLE001 - the rest still fails: not these events' doing alone
        raise first from None
    return kept, poisoned
