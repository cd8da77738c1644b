"""A timer that repairs holes in the input partitions' acknowledged offsets (every 5 s).

See :mod:`stream_app.offsets`: a partition whose first offsets after the committed one were
never delivered to its stream is sought back to the committed offset. Counted in
``wedding_stream_rewinds_total{topic}``.
"""

from __future__ import annotations

from stream_app.app import app
from stream_app.observability import STREAM_REWINDS
from stream_app.offsets import HoleRepair

_repair = HoleRepair()


@app.timer(interval=5.0)  # type: ignore[untyped-decorator]
async def repair_offset_holes() -> None:
    """Seek back the input partitions with a lasting hole at the head of their acks."""
    for tp in await _repair.check(app.consumer):
        STREAM_REWINDS.labels(tp.topic).inc()
