"""Table reads outside the current event's partition.

faust-streaming decides which RocksDB partition a table read looks in from the *current
event* (a context variable set per event by the stream). :func:`outside_any_event` clears it.
It uses ``faust.streams._current_event``, the variable ``faust.streams.current_event()``
reads (faust-streaming 0.15; :data:`stream_app.runtime.PINNED`). Needs no install step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from faust import streams


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
