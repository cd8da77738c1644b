"""How long the worker's Kafka consumer lets the broker hold a fetch: ``WEDDING_FETCH_MAX_WAIT_MS``.

faust-streaming 0.15 creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` (hard-coded
in ``AIOKafkaConsumerThread._create_worker_consumer``). aiokafka keeps one fetch request in
flight per broker, and it leaves out of that request every partition that still has records
buffered. So while the agents work through the buffered records of the busy partitions, the
next request asks only for partitions that have nothing new, and the broker holds it for the
full 1.5 s (``fetch.min.bytes`` is not reached); the busy partitions' next records cannot be
asked for until it returns. Measured on this project's 2-core machine with the hotel replay
(163,614 events, two of four partitions busy), a do-nothing faust agent read 2,500–4,750
events/s with the stock 1,500 ms, 54 s of a 65 s run spent waiting inside fetches, and
14,950 events/s with 20 ms. The stall is also what put 1.5–1.8 s at the p99 of
produce-to-update latency.

:func:`install` overrides the wait on the consumer faust creates, before it starts (a worker
calls it through :func:`stream_app.runtime.install`). A short
wait costs empty fetch round trips on an idle topic (one per partition leader per wait), which
a local broker answers in well under a millisecond.

Pinned to faust-streaming 0.15 (``AIOKafkaConsumerThread._create_worker_consumer``) and
aiokafka 0.14 (``AIOKafkaConsumer._fetch_max_wait_ms``, read in ``start()``).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_faust_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def install(fetch_max_wait_ms: int) -> None:
    """Make every worker consumer faust creates use ``fetch_max_wait_ms`` (milliseconds).

    Raises:
        ValueError: ``fetch_max_wait_ms`` is negative.
    """
    if fetch_max_wait_ms < 0:
        raise ValueError(f"fetch_max_wait_ms must be >= 0, got {fetch_max_wait_ms}")

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _faust_create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
