"""Consumer lag of a group on a topic: end offsets minus committed offsets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential


async def _committed(
    admin: AIOKafkaAdminClient, group_id: str, tps: list[TopicPartition]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """The group's committed offsets, retrying retriable broker errors (e.g. the group
    coordinator not yet available on a new broker) for up to ~30 s (tenacity)."""
    retrying = AsyncRetrying(
        stop=stop_after_delay(30),
        wait=wait_exponential(multiplier=0.2, max=2),
        retry=retry_if_exception(lambda e: isinstance(e, KafkaError) and e.retriable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            found: dict[
                TopicPartition, OffsetAndMetadata
            ] = await admin.list_consumer_group_offsets(group_id, partitions=tps)
            return found
    raise AssertionError("unreachable")  # pragma: no cover


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
        committed = await _committed(admin, group_id, tps)
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
    bootstrap: str,
    group_id: str,
    topic: str,
    timeout_s: float,
    poll_s: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> float:
    """Wait until ``group_id`` has committed everything in ``topic``; return seconds waited.

    ``progress``, when given, is called after every poll with ``(messages committed since the
    wait began, messages that were or became uncommitted since then)``: the first poll's lag
    plus whatever was produced after it, so the second figure may grow.

    Raises:
        TimeoutError: lag is still above zero after ``timeout_s`` seconds.
    """
    started = time.monotonic()
    lag: dict[int, tuple[int, int]] = {}
    base: dict[int, int] | None = None
    while time.monotonic() - started < timeout_s:
        lag = await partition_lag(bootstrap, group_id, topic)
        if progress is not None:
            if base is None:
                base = {p: done for p, (_, done) in lag.items()}
            start = sum(base.get(p, 0) for p in lag)
            ends = sum(max(end, done) for end, done in lag.values())
            progress(sum(done for _, done in lag.values()) - start, ends - start)
        if all(end <= done for end, done in lag.values()):
            return time.monotonic() - started
        await asyncio.sleep(poll_s)
    behind = {p: f"committed {done} of {end}" for p, (end, done) in lag.items() if end > done}
    raise TimeoutError(f"group {group_id!r} still behind on {topic!r}: {behind}")


async def partition_lag(bootstrap: str, group_id: str, topic: str) -> dict[int, tuple[int, int]]:
    """``{partition: (end offset, committed offset)}`` of ``group_id`` on ``topic``.

    A partition the group never committed has committed offset 0.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await _partitions(admin, topic)]
        ends = await consumer.end_offsets(tps)
        committed = await _committed(admin, group_id, tps)
        out: dict[int, tuple[int, int]] = {}
        for tp in tps:
            meta = committed.get(tp)
            out[tp.partition] = (
                ends[tp],
                meta.offset if meta is not None and meta.offset >= 0 else 0,
            )
        return out
    finally:
        await consumer.stop()
        await admin.close()


async def start_group_at_end(bootstrap: str, group_id: str, topics: list[str]) -> int:
    """Commit the end offset for every partition of ``topics`` that ``group_id`` never committed.

    This is what ``WEDDING_OFFSET_RESET=latest`` means for a new consumer group: it starts with
    the events produced from now on. faust-streaming seeks a partition without a committed offset
    to its beginning whatever ``consumer_auto_offset_reset`` says, so the offsets are committed
    before the worker joins. Partitions the group already committed are left alone; if the group
    has active members the broker refuses the commit and nothing changes.

    Returns:
        The number of partitions whose offset was set.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await admin.start()
    await consumer.start()
    try:
        tps = [
            TopicPartition(topic, p) for topic in topics for p in await _partitions(admin, topic)
        ]
        committed = await _committed(admin, group_id, tps)
        fresh = [tp for tp in tps if committed.get(tp) is None or committed[tp].offset < 0]
        if not fresh:
            return 0
        ends = await consumer.end_offsets(fresh)
        consumer.assign(fresh)
        try:
            await consumer.commit({tp: ends[tp] for tp in fresh})
        except KafkaError:
            return 0
        return len(fresh)
    finally:
        await consumer.stop()
        await admin.close()
