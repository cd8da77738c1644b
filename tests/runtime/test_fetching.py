"""The worker's Kafka consumer does not let the broker hold a fetch for faust's 1.5 s."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app import runtime
from stream_app.app import app, settings
from stream_app.runtime import fetching


async def _fetch_wait_of_a_new_worker_consumer() -> int:
    """The fetch wait of a consumer made the way faust makes its worker's (never started)."""
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]
    consumer = thread._create_worker_consumer(app.transport)
    try:
        return int(consumer._fetch_max_wait_ms)
    finally:
        await consumer.stop()


async def test_the_worker_consumer_uses_the_configured_fetch_wait() -> None:
    runtime.install(settings)  # as a worker does when it starts
    assert settings.fetch_max_wait_ms == 20  # the documented default
    assert await _fetch_wait_of_a_new_worker_consumer() == 20  # faust itself would set 1500
    try:
        fetching.install(37)
        assert await _fetch_wait_of_a_new_worker_consumer() == 37
    finally:
        fetching.install(settings.fetch_max_wait_ms, settings.prefetch_backoff_ms)
    assert await _fetch_wait_of_a_new_worker_consumer() == 20


def test_a_negative_fetch_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_ms must be >= 0"):
        fetching.install(-1)


def test_a_negative_prefetch_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="prefetch_backoff_ms must be >= 0"):
        fetching.install(20, -1)
