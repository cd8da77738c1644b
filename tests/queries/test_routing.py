"""Forwarded reads (``remote_json``) against a real HTTP server on loopback: the answer, the
retries of a 503 with their waits, the refusal after the last attempt, and no cyclic garbage
per read (the collector's passes over it set the HTTP reads' p99)."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from stream_app.queries import routing
from stream_app.queries.errors import QueryUnavailableError


@pytest.fixture
async def owner() -> AsyncIterator[tuple[str, list[int]]]:
    """A real HTTP server: ``/ok`` answers its query as JSON; ``/busy/N`` answers 503 to the
    first N requests, then 200. Yields its base URL and the statuses it answered."""
    answered: list[int] = []
    busy_left: dict[str, int] = {}

    async def ok(request: web.Request) -> web.Response:
        answered.append(200)
        return web.json_response({"q": dict(request.query)})

    async def busy(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        left = busy_left.setdefault(request.path, n)
        if left > 0:
            busy_left[request.path] = left - 1
            answered.append(503)
            return web.json_response({"error": "restoring"}, status=503)
        answered.append(200)
        return web.json_response({"done": True})

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/busy/{n}", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", answered
    finally:
        await routing.close_session()
        await runner.cleanup()


async def test_a_read_answers_the_owners_json(owner: tuple[str, list[int]]) -> None:
    url, answered = owner
    body = await routing.remote_json(url, "/ok", {"grain": "month"}, "acme")
    assert body["q"] == {"grain": "month"}
    assert answered == [200]


async def test_a_503_is_retried_after_the_stated_waits(
    owner: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing, "FIRST_RETRY_S", 0.05)  # waits 0.05, then 0.1, 0.2, ...
    url, answered = owner
    start = time.monotonic()
    assert await routing.remote_json(url, "/busy/2", {}, "acme") == {"done": True}
    assert answered == [503, 503, 200]
    assert time.monotonic() - start >= 0.05 + 0.1


async def test_the_owner_still_busy_after_the_last_attempt_is_owner_unavailable(
    owner: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routing, "FIRST_RETRY_S", 0.01)
    url, answered = owner
    with pytest.raises(QueryUnavailableError) as err:
        await routing.remote_json(url, "/busy/100", {}, "acme")
    assert err.value.code == "owner_unavailable"
    assert answered == [503] * routing.ATTEMPTS


async def test_reads_leave_no_cyclic_garbage(owner: tuple[str, list[int]]) -> None:
    """200 reads with the collector off, then one pass: what it finds is cyclic garbage.
    A tenacity retrier per read left 30+ objects each (over 6,000 here)."""
    url, _ = owner
    await routing.remote_json(url, "/ok", {}, "acme")  # connection and token made once
    gc.collect()
    gc.disable()
    try:
        for _ in range(200):
            await routing.remote_json(url, "/ok", {"grain": "month"}, "acme")
        found = gc.collect()
    finally:
        gc.enable()
    assert found < 200
