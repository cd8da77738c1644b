"""Read-only views of faust's consumer bookkeeping, for ``GET /debug/consumer``.

Reads, never writes. Pinned to faust-streaming 0.15 (``Consumer._commit_fut``, ``_acked``,
``_committed_offset``, ``_read_offset``, ``_gap``, ``_thread``; ``ProducerBuffer.pending``),
mode-streaming 0.7 (``ServiceThread._thread``) and aiokafka 0.14 (``AIOKafkaConsumer._loop``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream_app.runtime.producer_flush import in_flight


def consumer_state(app: Any) -> dict[str, Any]:
    """faust's offset bookkeeping of ``app``'s consumer and the size of its producer buffer.

    Returns:
        ``{"commit_in_flight": bool, "consumer_on_worker_loop": bool (the aiokafka consumer
        runs on the worker's event loop, no thread of its own: :mod:`stream_app.runtime.inloop`),
        "prefetch_backoff_ms": float | None (aiokafka's, :mod:`stream_app.runtime.fetching`;
        None before the consumer has started),
        "producer_buffer_pending": int,
        "producer_buffer_in_flight": int, "partitions": {"topic/partition": {"committed":
        int | None, "read_offset": int | None, "acked_count": int, "acked_head": [int, ...]
        (first 5), "acked_tail": [int, ...] (last 5), "gaps": [[begin, end], ...] (first
        10)}}}``, partitions in (topic, partition) order: every partition with acknowledged
        or committed offsets.
    """
    consumer: Any = app.consumer
    kafka: Any = getattr(consumer._thread, "_consumer", None)  # None until it has started
    fetcher: Any = None if kafka is None else kafka._fetcher
    out: dict[str, Any] = {
        "commit_in_flight": consumer._commit_fut is not None,
        "consumer_on_worker_loop": (
            consumer._thread._thread is None
            and kafka is not None
            and kafka._loop is asyncio.get_running_loop()
        ),
        "prefetch_backoff_ms": (None if fetcher is None else fetcher._prefetch_backoff * 1000),
        "producer_buffer_pending": app.producer.buffer.pending.qsize(),
        "producer_buffer_in_flight": in_flight(app.producer.buffer),
        "partitions": {},
    }
    tps = set(consumer._acked) | set(consumer._committed_offset)
    for tp in sorted(tps, key=lambda t: (t.topic, t.partition)):
        acked = sorted(consumer._acked.get(tp, []))
        gap = consumer._gap.get(tp)
        out["partitions"][f"{tp.topic}/{tp.partition}"] = {
            "committed": consumer._committed_offset.get(tp),
            "read_offset": consumer._read_offset.get(tp),
            "acked_count": len(acked),
            "acked_head": acked[:5],
            "acked_tail": acked[-5:],
            "gaps": [[i.begin, i.end] for i in sorted(gap)][:10] if gap else [],
        }
    return out
