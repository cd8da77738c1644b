"""Failpoints: a worker that kills itself at a named point of its batch loop, for the
crash tests (``tests/e2e/test_crash_points.py``).

``WEDDING_FAILPOINT=<point>:<n>`` makes the worker end with ``os._exit(137)`` (no cleanup, no
flush: what SIGKILL leaves) the ``n``-th time it reaches ``<point>``. Unset (the default), a
failpoint costs one dictionary lookup. The points of :class:`stream_app.agents.batch.BatchStream`
are :data:`POINTS`.

``WEDDING_FAILPOINT_FOLD=<event id>`` makes the fold (and its probe) raise on the event of that
id, as a fold meeting an input it cannot handle would (:func:`fold_fails`);
``WEDDING_FAILPOINT_FOLD_ONCE=<event id>`` makes the fold of the first batch holding that event
raise, its probe not (a failure no single event is blamed for: the agent stops), and the
later folds pass (:func:`fold_crashes_once`; both in ``tests/e2e/test_poison.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from stream_app.errors import WeddingError

POINTS: tuple[str, ...] = (
    "decoded",  # the batch decoded, nothing sent
    "folded",  # folded in memory, nothing sent
    "changelog_sent",  # changelog records handed to the producer, not acknowledged
    "changelog_acked",  # changelog acknowledged, RocksDB not written
    "state_written",  # RocksDB written, updates not published, input not acknowledged
    "announced",  # updates published, input not acknowledged
)

_spec = os.environ.get("WEDDING_FAILPOINT", "")
_point, _, _nth = _spec.partition(":")
_left = int(_nth or "1") if _point else 0


def hit(point: str) -> None:
    """Exit the process at once (status 137) when ``point`` is the armed failpoint and this is
    its ``n``-th hit; otherwise nothing."""
    global _left
    if point != _point or _left <= 0:
        return
    _left -= 1
    if _left == 0:
        os._exit(137)


class FailpointError(WeddingError, RuntimeError):
    """The fold failure :func:`fold_fails` injects."""


_poison = os.environ.get("WEDDING_FAILPOINT_FOLD", "")


def fold_fails(batch: Sequence[tuple[int, Any]]) -> None:
    """Raise :class:`FailpointError` when an event of ``batch`` (``(offset, event)`` pairs)
    has the ``event_id`` in ``WEDDING_FAILPOINT_FOLD``, as a fold meeting an input it cannot
    handle would (for ``tests/e2e/test_poison.py``); unset (the default), nothing."""
    if not _poison:
        return
    for _, event in batch:
        if getattr(event, "event_id", None) == _poison:
            raise FailpointError(f"failpoint: the fold fails on event {_poison!r}")


_crash_once = os.environ.get("WEDDING_FAILPOINT_FOLD_ONCE", "")


def fold_crashes_once(batch: Sequence[tuple[int, Any]]) -> None:
    """Raise :class:`FailpointError` the first time ``batch`` holds the event whose
    ``event_id`` is in ``WEDDING_FAILPOINT_FOLD_ONCE``; unset (the default), nothing."""
    global _crash_once
    if not _crash_once:
        return
    for _, event in batch:
        if getattr(event, "event_id", None) == _crash_once:
            _crash_once = ""
            raise FailpointError(f"failpoint: the fold of the batch of {event.event_id!r} fails")
