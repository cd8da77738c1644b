"""How the worker's Kafka consumer fetches: the fetch wait and the prefetch backoff.

**Fetch wait** (``WEDDING_FETCH_MAX_WAIT_MS``).
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

**Prefetch backoff** (``WEDDING_PREFETCH_BACKOFF_MS``). aiokafka sends no fetch request to a
broker while any partition's fetched records have waited less than ``prefetch_backoff`` (100 ms,
not a consumer option) without being taken (``Fetcher._get_actions_per_node``). faust never
takes the records of the tables' changelog partitions it does not read (after recovery they stay
assigned, out of faust's active set): the first changelog records a batch writes came back in a
fetch and held every input partition of the broker for 100 ms. Traced per batch at 1,000
events/s: the events of the first 200 ms reached the worker 96–110 ms after they were produced
(a p99 of 54–77 ms over 15 s came from there); with 5 ms, 30–38 ms. :func:`install` sets it on
the fetcher once the consumer has started.

Pinned to faust-streaming 0.15 (``AIOKafkaConsumerThread._create_worker_consumer``) and
aiokafka 0.14 (``AIOKafkaConsumer._fetch_max_wait_ms``, read in ``start()``;
``AIOKafkaConsumer._fetcher``, ``Fetcher._prefetch_backoff``).
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_faust_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def install(fetch_max_wait_ms: int, prefetch_backoff_ms: int = 5) -> None:
    """Make every worker consumer faust creates use ``fetch_max_wait_ms`` and, once started,
    ``prefetch_backoff_ms`` (milliseconds).

    Raises:
        ValueError: ``fetch_max_wait_ms`` or ``prefetch_backoff_ms`` is negative.
    """
    if fetch_max_wait_ms < 0:
        raise ValueError(f"fetch_max_wait_ms must be >= 0, got {fetch_max_wait_ms}")
    if prefetch_backoff_ms < 0:
        raise ValueError(f"prefetch_backoff_ms must be >= 0, got {prefetch_backoff_ms}")

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = _faust_create_worker_consumer(self, transport)
        consumer._fetch_max_wait_ms = fetch_max_wait_ms
        start = consumer.start

        async def start_then_tune() -> None:
            await start()  # creates the fetcher
            consumer._fetcher._prefetch_backoff = prefetch_backoff_ms / 1000

        consumer.start = start_then_tune
        return consumer

    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
