"""A partition that has worked off its backlog is committed at once, not at the next commit
interval (:meth:`stream_app.runtime.consumer.BatchConsumer._commit_soon`).

The worker's commit interval is set to 600 s (``WEDDING_COMMIT_INTERVAL_S``), so the only
commits that can bring the group's lag on ``wedding-bookings`` to 0 within the test are
those made on catching up: first after the topic's backlog (the other tests' events, read
by this new group from the start), then after 40 new events.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stream_app.lag import consumer_lag
from stream_app.settings import Settings
from stream_app.topics import WEDDING_BOOKINGS
from tests.conftest import WorkerFactory
from tests.e2e.helpers import booking_created, send

GROUP = "wedding-commit-at-catch-up"


async def lag_zero_within(settings: Settings, seconds: float) -> None:
    """Wait until the group's lag on ``wedding-bookings`` is 0; fail after ``seconds``."""
    start = time.monotonic()
    while (lag := await consumer_lag(settings.kafka_bootstrap, GROUP, WEDDING_BOOKINGS)) > 0:
        assert time.monotonic() - start < seconds, f"lag {lag} after {seconds:g} s"
        await asyncio.sleep(0.2)


@pytest.mark.usefixtures("own_workers")
async def test_a_caught_up_partition_is_committed_at_once(
    settings: Settings, worker_factory: WorkerFactory
) -> None:
    worker = worker_factory.start(
        GROUP, "w", WEDDING_COMMIT_INTERVAL_S="600", WEDDING_SCHEDULING="0"
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    await lag_zero_within(settings, 240)  # the backlog folded, then committed
    events = [
        booking_created("commit-org", f"commit-{i}", f"b{i}", f"v{i % 7}", "2026-07-01", 100, "EUR")
        for i in range(40)
    ]
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, events)
    await lag_zero_within(settings, 20)  # at once (0.5 s apart at most), not after 600 s
