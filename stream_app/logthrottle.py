"""A logging filter that keeps a failure repeated every second from flooding the log.

With its broker and database away, a worker's loops (the delivery tick, the scheduler, the
report sweep) and aiokafka's reconnects log the same failure several times a second, each of
ours with a full traceback: about 8,000 lines a minute. :class:`RepeatThrottle`, on every
handler of the worker's root logger (:class:`stream_app.worker.EngineWorker`), lets through
per kind of failure (logger, level and message template: ``"delivery tick failed"``,
``"Unable connect to node with id %s: %s"``) the first record whole, with its traceback,
then at most one line per :data:`WINDOW_S` without the traceback, saying how many were left
out. A kind quiet for a whole window starts afresh (its next record comes whole again).
Records below ``WARNING`` pass untouched.

A record whose line must always be written (an HTTP 500's incident line: the incident id is
what its client was told) names its own kind in ``extra={TRACEBACK_KIND: ...}`` (e.g. the
route template and the exception type): it always passes, and only its traceback is left out
when the same kind already showed one in the last :data:`WINDOW_S` (the line then says so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0
"""Seconds between two lines of one kind of failure after its first."""

MAX_KINDS = 1_000
"""Kinds remembered at most; beyond, the oldest is forgotten (its next record comes whole)."""

_DECIDED = "wedding_throttle_keep"
"""The record attribute holding the throttle's decision for it."""

TRACEBACK_KIND = "wedding_traceback_kind"
"""Record attribute (``extra={TRACEBACK_KIND: "<kind>"}``): the record always passes; only its
traceback is throttled, per (logger, level, this kind)."""

Kind = tuple[str, int, str]
"""A kind of failure: (logger name, level, message template before ``%`` formatting)."""


@dataclass(slots=True)
class _Seen:
    since: float
    """When the kind's last line went out (``clock`` seconds)."""
    left_out: int = 0
    """Records of the kind dropped since then."""


class RepeatThrottle(logging.Filter):
    """Throttle repeated ``WARNING``-and-above records per kind (see the module docstring).

    Args:
        window_s: seconds between two lines of one kind after its first.
        clock: monotonic seconds (a test passes its own).
    """

    def __init__(
        self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._seen: dict[Kind, _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True to emit ``record`` (rewritten to one line with a count when it sums up a
        window of repeats), False to drop it."""
        if record.levelno < logging.WARNING:
            return True
        decided = getattr(record, _DECIDED, None)  # one record, several handlers: one decision
        if decided is not None:
            return bool(decided)
        own_kind = getattr(record, TRACEBACK_KIND, None)
        keep = self._decide(record) if own_kind is None else self._traceback(record, own_kind)
        setattr(record, _DECIDED, keep)
        return keep

    def _traceback(self, record: logging.LogRecord, own_kind: object) -> bool:
        """Always True: ``record`` is written; its traceback is dropped when its kind showed
        one less than a window ago."""
        kind = (record.name, record.levelno, str(own_kind))
        now = self.clock()
        seen = self._seen.get(kind)
        if seen is None or now - seen.since >= self.window_s:
            if seen is None and len(self._seen) >= MAX_KINDS:
                del self._seen[next(iter(self._seen))]
            self._seen[kind] = _Seen(now)
            return True
        seen.left_out += 1
        if record.exc_info is not None or record.exc_text is not None:
            record.msg = (
                f"{record.msg} [traceback left out: as the one logged {now - seen.since:.0f} s"
                f" ago for {own_kind}; {seen.left_out} left out since]"
            )
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True

    def _decide(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(kind)
        if seen is None:
            if len(self._seen) >= MAX_KINDS:
                del self._seen[next(iter(self._seen))]
            self._seen[kind] = _Seen(now)
            return True
        elapsed = now - seen.since
        if elapsed < self.window_s:
            seen.left_out += 1
            return False
        left_out, seen.since, seen.left_out = seen.left_out, now, 0
        if left_out == 0:  # quiet for a whole window: a new episode, shown whole
            return True
        record.msg = (
            f"{record.msg} [again; {left_out} more like this in the last {elapsed:.0f} s"
            " not logged; traceback as in the first]"
        )
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


def install(logger: logging.Logger, throttle: RepeatThrottle | None = None) -> RepeatThrottle:
    """Add ``throttle`` (a new :class:`RepeatThrottle` by default) to every handler of
    ``logger`` (a handler's filters see the records its children propagate; a logger's own
    filters do not); returns it."""
    throttle = throttle or RepeatThrottle()
    for handler in logger.handlers:
        handler.addFilter(throttle)
    return throttle
