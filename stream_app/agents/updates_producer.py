"""The producer of ``realtime-metrics-updates``: a Kafka producer of its own, beside faust's.

aiokafka keeps one produce request in flight per broker connection. Sharing faust's producer,
a batch's metric updates went out in the produce request after the one in flight, which
carried the previous batches' changelog records (rows and dedupe records, most of the bytes):
an update waited for a changelog round trip it does not need. On a connection of its own it
goes out at once, while the changelog request is in flight.

Delivery stays at-least-once: the batch loop awaits the updates' acknowledgements with the
changelog's before it acknowledges the input (:class:`stream_app.agents.batch.BatchStream`),
as faust's flush of its own producer before a commit did for the shared one; a batch folded
again after a crash sends its updates again, with the same absolute values.

The producer starts on the first publish and stops (flushing what it holds) when the worker
stops (faust's ``on_before_shutdown`` signal, after the consumer stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from aiokafka import AIOKafkaProducer

from stream_app.app import app, settings


class UpdatesProducer:
    """A lazily started ``AIOKafkaProducer`` for the metric updates (see the module).

    Args:
        bootstrap: ``host:port`` of a Kafka broker.
        client_id: the client id the broker sees.
    """

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self) -> AIOKafkaProducer:
        """The started producer (started on the first call; acks from all in-sync replicas,
        as the changelog's).

        Raises:
            aiokafka.errors.KafkaConnectionError: the broker cannot be reached at start.
        """
        if self._producer is not None:
            return self._producer
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    linger_ms=0,
                )
                await producer.start()
                self._producer = producer
        return self._producer

    async def stop(self) -> None:
        """Flush and stop the producer, if it was started."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


updates_producer = UpdatesProducer(settings.kafka_bootstrap, f"{settings.app_id}-updates")
"""The worker's producer of ``realtime-metrics-updates``."""


def _stop_updates_producer(
    sender: Any, /, *args: Any, signal: Any, **kwargs: Any
) -> Awaitable[None]:
    return updates_producer.stop()


app.on_before_shutdown.connect(_stop_updates_producer)
