"""Watch a consumer group's committed offsets on a topic, finely, with clients kept open.

The benchmarks time a fold from a start instant to the moment the group's committed offsets
reach the end of the topic. ``stream_app.lag.wait_for_lag_zero`` opens two clients per poll
(a few hundred ms each on a loaded machine); this watcher keeps one admin client and one
consumer open and polls every ``poll_s`` seconds (0.1 s by default), so the end instant is
known to within about one poll plus one admin round trip. The group's own commit interval
(faust 2.8 s, Quix Streams 5 s) still delays the moment offsets show as committed: every
system is measured the same way, up to all offsets committed.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential


class CommitWatcher:
    """Committed offsets of consumer groups on one topic (use as ``async with``).

    Args:
        bootstrap: Kafka bootstrap address.
        topic: the topic whose partitions are watched (must exist).
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> CommitWatcher:
        await self._admin.start()
        await self._consumer.start()
        described = await self._admin.describe_topics([self.topic])
        if not described or described[0].get("error_code", 0) != 0:
            raise LookupError(f"topic {self.topic!r} does not exist")
        self._tps = sorted(
            (TopicPartition(self.topic, p["partition"]) for p in described[0]["partitions"]),
            key=lambda tp: tp.partition,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()
        await self._admin.close()

    def partitions(self) -> list[int]:
        """The topic's partition numbers, ascending."""
        return [tp.partition for tp in self._tps]

    async def end_total(self) -> int:
        """Sum over partitions of the topic's end offsets (messages written, no transactions)."""
        ends = await self._consumer.end_offsets(self._tps)
        return sum(ends[tp] for tp in self._tps)

    async def committed_total(self, group_id: str) -> int:
        """Sum over partitions of ``group_id``'s committed offsets (0 where none).

        Retriable broker errors are retried for up to 30 s, then raised (``KafkaError``).
        """
        retrying = AsyncRetrying(  # a fresh broker answers "coordinator not available" a while
            stop=stop_after_delay(30),
            wait=wait_exponential(multiplier=0.1, max=1),
            retry=retry_if_exception(lambda e: isinstance(e, KafkaError) and e.retriable),
            reraise=True,
        )
        found: dict[TopicPartition, OffsetAndMetadata] = {}
        async for attempt in retrying:
            with attempt:
                found = await self._admin.list_consumer_group_offsets(
                    group_id, partitions=self._tps
                )
        total = 0
        for tp in self._tps:
            meta = found.get(tp)
            if meta is not None and meta.offset > 0:
                total += meta.offset
        return total

    async def wait_all_committed(
        self, group_id: str, timeout_s: float, poll_s: float = 0.1
    ) -> float:
        """Wait until ``group_id`` committed the end of every partition.

        Returns:
            ``time.monotonic()`` of the first poll that saw everything committed.

        Raises:
            TimeoutError: not all committed after ``timeout_s`` seconds (with the count).
        """
        end = await self.end_total()
        deadline = time.monotonic() + timeout_s
        done = 0
        while time.monotonic() < deadline:
            done = await self.committed_total(group_id)
            if done >= end:
                return time.monotonic()
            await asyncio.sleep(poll_s)
        raise TimeoutError(f"group {group_id!r} committed {done:,} of {end:,} on {self.topic!r}")
