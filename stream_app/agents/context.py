"""Run table writes on behalf of a chosen event (so they land in its partition).

faust-streaming decides the changelog partition and the RocksDB partition of a table write
from the *current event* (a context variable set per event by the stream). When an agent
folds a batch from ``Stream.take_events`` and writes the coalesced rows afterwards, the current
event is whichever came last, possibly from another partition. :func:`acting_for` sets it to an
event of the partition being written. It uses ``faust.streams._current_event``, the variable
``faust.streams.current_event()`` reads; pinned by the ``faust-streaming<0.16`` requirement.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from faust import streams
from faust.types import EventT


@contextmanager
def acting_for(event: EventT[bytes]) -> Iterator[None]:
    """Within the block, table writes go to ``event``'s partition."""
    token = streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        streams._current_event.reset(token)


@contextmanager
def outside_any_event() -> Iterator[None]:
    """Within the block, table reads search every local partition, not the current event's.

    A table read inside an agent looks only in the current event's partition; a report agent
    reading venue rows (which live in other partitions than its request) must not.
    """
    token = streams._current_event.set(None)
    try:
        yield
    finally:
        streams._current_event.reset(token)
