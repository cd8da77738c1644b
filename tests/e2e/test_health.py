"""``/health`` is a readiness answer: 503 until the worker can answer its table reads.

A worker whose advertised name (``WEDDING_WEB_HOST``) does not resolve here still serves on
the address it binds (``WEDDING_WEB_BIND``), as a pod does: bound to every interface,
named by its stable DNS name for the other workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp

from tests.conftest import WorkerFactory


async def test_health_is_503_until_the_worker_has_joined_and_restored(
    worker_factory: WorkerFactory,
) -> None:
    group = f"health-{uuid.uuid4().hex[:8]}"
    worker = worker_factory.start(
        group,
        "w0",
        WEDDING_SCHEDULING="0",
        WEDDING_WEB_HOST="worker-0.wedding-workers.invalid",  # .invalid never resolves
        WEDDING_WEB_BIND="127.0.0.1",
    )
    seen: list[tuple[int, dict[str, object]]] = []
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and not (seen and seen[-1][0] == 200):
            assert worker.process.poll() is None, "the worker exited"
            try:
                async with session.get(f"{worker.url}/health") as resp:
                    seen.append((resp.status, await resp.json()))
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.05)
    worker.stop()
    assert seen and seen[-1][0] == 200, seen[-3:]
    body = seen[-1][1]
    # the only member of its group: every partition of wedding-bookings
    assert body == {"status": "ok", "ready": True, "bookings_partitions": [0, 1, 2, 3]}
    before = seen[:-1]
    assert before, "the web server answered only once the worker was ready"
    assert {code for code, _ in before} == {503}
    assert {b["ready"] for _, b in before} == {False}
    assert {str(b["status"]) for _, b in before} <= {"starting", "rebalancing", "recovering"}
    assert before[0][1]["status"] in ("starting", "rebalancing")
