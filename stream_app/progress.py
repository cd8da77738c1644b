"""Progress of long command-line jobs (``replay``, ``synth``, ``--wait``): a bar on a terminal,
plain lines otherwise.

On a terminal (the output stream's ``isatty()``) a tqdm bar shows the count, the rate and the
time left, redrawn in place. Anywhere else (a pipe, a file, a CI log, ``kubectl logs``) a bar
would be a stream of carriage returns, so one plain line is written at most every
``interval_s`` seconds, and always for the last update::

    synth: 500 / 2,000 weddings (25.0 %), 1,234 weddings/s, about 1 s left
    synth: 2,000 / 2,000 weddings (100.0 %) in 1.6 s

The clock starts at the first update (the jobs send ``(0, total)`` when their counted work
begins, after reading files or connecting); the rate is the average since then, the time left
what remains at that rate. Used by :mod:`stream_app.cli` only.
"""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import NoReturn, TextIO

from tqdm import tqdm


class Progress:
    """One long job's progress: call it with ``(done, total)``; :meth:`close` when finished.

    Args:
        label: the job's name, first on every line (``replay``).
        unit: what is counted, plural (``events``).
        interval_s: plain mode: at least this many seconds between two lines (0: a line per
            update). Set by ``WEDDING_PROGRESS_INTERVAL_S``.
        stream: where to write (default ``sys.stdout``).
        terminal: force bar (True) or plain lines (False); default: ``stream.isatty()``.
    """

    def __init__(
        self,
        label: str,
        unit: str,
        *,
        interval_s: float = 10.0,
        stream: TextIO | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.label = label
        self.unit = unit
        self.interval_s = interval_s
        self.stream = stream if stream is not None else sys.stdout
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.started: float | None = None
        self.first_done = 0
        self.last_line = -float("inf")
        self.done = 0
        self.total = 0
        self.printed_done = -1
        self.bar: tqdm[NoReturn] | None = None

    def __call__(self, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` units are finished (both absolute, ``total`` may
        grow)."""
        self.done, self.total = done, total
        if self.started is None:
            self.started, self.first_done = time.monotonic(), done
        if self.terminal:
            if self.bar is None:
                # a terminal that reports no size (a fresh pseudo-terminal, some CI and
                # `docker run -t` consoles) would get no bar at all: 80 × 24 then
                size = shutil.get_terminal_size((80, 24))
                self.bar = tqdm(
                    total=total,
                    desc=self.label,
                    unit=f" {self.unit}",
                    file=self.stream,
                    ncols=size.columns,
                    nrows=size.lines,
                    mininterval=0.2,
                    initial=done,
                )
            bar: tqdm[NoReturn] = self.bar
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
            return
        now = time.monotonic()
        if now - self.last_line >= self.interval_s or done >= total:
            self.last_line = now
            self._line(self.plain_line(done, total, now - self.started, self.first_done))

    def plain_line(self, done: int, total: int, elapsed_s: float, first_done: int = 0) -> str:
        """The plain line for ``done`` of ``total``, ``elapsed_s`` seconds after the first
        update (which had ``first_done`` done); see the module docstring for its shape."""
        share = 100.0 * done / total if total else 100.0
        head = f"{self.label}: {done:,} / {total:,} {self.unit} ({share:.1f} %)"
        if done >= total:
            return f"{head} in {elapsed_s:.1f} s"
        if done <= first_done or elapsed_s <= 0:
            return f"{head}, time left unknown"
        rate = (done - first_done) / elapsed_s
        return f"{head}, {rate:,.0f} {self.unit}/s, about {(total - done) / rate:,.0f} s left"

    def _line(self, text: str) -> None:
        self.printed_done = self.done
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar, or write the last plain line if the last update was not written."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.started is not None and self.printed_done != self.done:
            elapsed = time.monotonic() - self.started
            self._line(self.plain_line(self.done, self.total, elapsed, self.first_done))

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
