"""Consumer lag of a group on a topic: end offsets minus committed offsets."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def consumer_lag(bootstrap: str, group_id: str, topic: str) -> int:
    """Messages of ``topic`` not yet committed by ``group_id``, summed over partitions.

    A partition the group never committed counts in full (from offset 0).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        parts = await _partitions(admin, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    described = await admin.describe_topics([topic])
    if not described or described[0].get("error_code", 0) != 0:
        raise LookupError(f"topic {topic!r} does not exist")
    return sorted(p["partition"] for p in described[0]["partitions"])


async def wait_for_lag_zero(
    bootstrap: str, group_id: str, topic: str, timeout_s: float, poll_s: float = 1.0
) -> float:
    """Wait until ``group_id`` has committed everything in ``topic``; return seconds waited.

    Raises:
        TimeoutError: lag is still above zero after ``timeout_s`` seconds.
    """
    started = time.monotonic()
    lag = -1
    while time.monotonic() - started < timeout_s:
        lag = await consumer_lag(bootstrap, group_id, topic)
        if lag == 0:
            return time.monotonic() - started
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"group {group_id!r} still {lag} messages behind on {topic!r}")
