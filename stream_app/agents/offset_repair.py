"""A timer that repairs holes in the input partitions' acknowledged offsets (every 5 s).

See :meth:`stream_app.runtime.consumer.BatchConsumer.repair_holes`: a partition whose first
offsets after the committed one were never delivered to its stream (a fetch from before a seek
that arrived after it) is sought back to the committed offset once the hole has lasted
:data:`HOLE_REPAIR_AFTER_S`. Counted in ``wedding_stream_rewinds_total{topic}``.
"""

from __future__ import annotations

from stream_app.app import app
from stream_app.observability import STREAM_REWINDS
from stream_app.runtime.consumer import BatchConsumer

HOLE_REPAIR_AFTER_S = 10.0
"""Seconds a hole at the head of a partition's acknowledged offsets may last before repair."""


@app.timer(interval=5.0)  # type: ignore[untyped-decorator]
async def repair_offset_holes() -> None:
    """Seek back the input partitions with a lasting hole at the head of their acks."""
    consumer = app.consumer
    if isinstance(consumer, BatchConsumer):
        for tp in await consumer.repair_holes(HOLE_REPAIR_AFTER_S):
            STREAM_REWINDS.labels(tp.topic).inc()
