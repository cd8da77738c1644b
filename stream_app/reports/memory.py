"""Peak memory of each running report (the ``peak_memory_bytes`` of its performance).

Part of the reports layer (observability of a run); see :class:`MemoryTracer` for the two
modes (``WEDDING_REPORT_MEMORY``).
"""

from __future__ import annotations

import os
import resource
import threading
import time
import tracemalloc


def rss_bytes() -> int:
    """Resident set size of this process now (``/proc/self/statm``; else the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MemoryTracer:
    """Peak memory of each running report, in one of two modes (``WEDDING_REPORT_MEMORY``).

    - ``rss`` (default): a sampler thread reads the process's resident set size every 5 ms
      while reports run; a report's figure is the peak RSS above the RSS at its start (what
      it made the worker grow by; memory reused from earlier reports does not count again).
    - ``tracemalloc``: peak of Python allocations above the level at the report's start
      (exact for one report at a time, an upper bound when reports overlap; it slows
      allocation-heavy rendering 2–5× here, hence not the default).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.active: dict[int, list[int]] = {}  # token -> [baseline, peak]
        self._lock = threading.Lock()
        self._next = 0
        self._sampler: threading.Thread | None = None

    def begin(self) -> int:
        """Start measuring one report; returns its token."""
        with self._lock:
            self._next += 1
            token = self._next
            if self.mode == "tracemalloc":
                if not self.active:
                    tracemalloc.start()
                    tracemalloc.reset_peak()
                now = tracemalloc.get_traced_memory()[0]
            else:
                now = rss_bytes()
            self.active[token] = [now, now]
            if self.mode != "tracemalloc" and self._sampler is None:
                self._sampler = threading.Thread(target=self._sample, daemon=True)
                self._sampler.start()
        return token

    def _sample(self) -> None:
        while True:
            with self._lock:
                if not self.active:
                    self._sampler = None
                    return
                rss = rss_bytes()
                for pair in self.active.values():
                    pair[1] = max(pair[1], rss)
            time.sleep(0.005)

    def end(self, token: int) -> int:
        """Stop measuring the report of ``token``; its peak bytes above its start."""
        with self._lock:
            baseline, peak = self.active.pop(token, [0, 0])
            if self.mode == "tracemalloc":
                if tracemalloc.is_tracing():
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
                if not self.active:
                    tracemalloc.stop()
            else:
                peak = max(peak, rss_bytes())
        return max(0, peak - baseline)


tracer = MemoryTracer(os.environ.get("WEDDING_REPORT_MEMORY", "rss"))
"""The tracer of this process's reports."""
