"""``GET /metrics``: the Prometheus text of this worker, rendered at a bounded rate.

Rendering the registry is pure Python on the worker's event loop (~9 ms on this project's
2-core machine), and the page takes no token (Prometheus scrapes it; keep it off the ingress,
README "Security model"). Rendered once per request, sixteen anonymous connections asking
for it in a loop took a whole event loop: another tenant's venue reads went from p50 4.3 ms
to 350 ms, max 3.2 s (the 20th stop's attacker round, finding F1).

So requests share renders (:class:`PacedRenders`): at most one render at a time, each begun
at least :data:`MIN_GAP_S` after the one before, and every request is answered with a render
*begun after it arrived*, never an older one. A test or an operator reading the page, then
acting, then reading again sees the action (nothing is cached); a flood costs at most
1 / :data:`MIN_GAP_S` renders a second (~9 % of a loop) and waits its turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.observability import REGISTRY

MIN_GAP_S = 0.1
"""Seconds between the starts of two renders of the page, at least (a Prometheus server
scrapes every 15 s or so; a flood waits)."""


class PacedRenders:
    """Shared renders of one page: :meth:`get` returns the bytes of a render begun after the
    call, at most one render runs at a time and two start at least ``min_gap_s`` seconds
    apart (``time.monotonic``); the callers waiting for the next render all get it.

    Args:
        render: makes the page (synchronous, on the event loop; an exception is raised to
            every caller of that render).
        min_gap_s: seconds between the starts of two renders, at least.
    """

    def __init__(self, render: Callable[[], bytes], min_gap_s: float = MIN_GAP_S) -> None:
        self._render = render
        self._min_gap_s = min_gap_s
        self._next: asyncio.Future[bytes] | None = None  # the render not begun yet
        self._lock = asyncio.Lock()
        self._last_start = float("-inf")
        self._tasks: set[asyncio.Task[None]] = set()  # the scheduled renders, referenced
        self.renders = 0
        """Renders made so far (for tests and the benchmark of the flood)."""

    async def get(self) -> bytes:
        """The page from a render begun after this call (raises what the render raised)."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        async with self._lock:  # the render before this one has ended
            wait = self._last_start + self._min_gap_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            future, self._next = self._next, None  # later callers wait for the render after
            assert future is not None
            self._last_start = time.monotonic()
            self.renders += 1
            try:
                page = self._render()
            except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
                future.set_exception(exc)
                future.exception()  # retrieved here too: no "never retrieved" warning
            else:
                future.set_result(page)


_PAGE = PacedRenders(lambda: generate_latest(REGISTRY))


async def metrics_response() -> web.Response:
    """The ``/metrics`` answer (text exposition format 0.0.4)."""
    resp = web.Response(body=await _PAGE.get())
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
