"""Producing many records at once: aiokafka record batches, one per partition and size limit.

faust's ``Producer.send`` and aiokafka's ``send`` create a future and a callback per message;
an agent that produces thousands of table changelog records and metric updates per batch
spends more time there than in its fold. :func:`send_records` appends the records of each
partition to aiokafka ``BatchBuilder``\\ s (``create_batch``) and queues them with
``send_batch``, which keeps their order within each partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

Record = tuple[bytes | None, bytes | None]
"""``(key, value)`` of one message, already serialised."""


async def send_records(
    client: Any, topic: str, by_partition: Mapping[int, Sequence[Record]]
) -> list[tuple[int, int, asyncio.Future[Any]]]:
    """Queue ``by_partition``'s records on ``topic``; the futures of the batches sent.

    ``client`` is an ``aiokafka.AIOKafkaProducer`` (faust's producer wraps one:
    ``app.producer._ensure_producer()``). A batch is closed when aiokafka's
    ``max_batch_size`` is reached; a record larger than that goes alone in its batch.

    Returns:
        ``(partition, records in the batch, future)`` per batch, in sending order; a future's
        result is the ``RecordMetadata`` of the batch (``offset`` = its first record's).

    Raises:
        aiokafka.errors.KafkaTimeoutError: aiokafka's buffer stayed full for
            ``request_timeout_ms``.
    """
    sent: list[tuple[int, int, asyncio.Future[Any]]] = []
    for partition, records in by_partition.items():
        batch = client.create_batch()
        count = 0
        for key, value in records:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append(
                    (partition, count, await client.send_batch(batch, topic, partition=partition))
                )
                batch = client.create_batch()
                count = 0
                # an empty batch always takes its first record, whatever its size
                batch.append(key=key, value=value, timestamp=None)
            count += 1
        if count:
            sent.append(
                (partition, count, await client.send_batch(batch, topic, partition=partition))
            )
    return sent
