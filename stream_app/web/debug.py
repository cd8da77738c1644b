"""``GET /debug/consumer``: faust's offset bookkeeping of this worker, for diagnosing stalls.

Served only when ``WEDDING_DEBUG=1`` (it exposes internals, not tenant data): per input
partition, the committed offset faust believes in, the acked offsets waiting to be committed
(first and last 5, and how many), the gaps, whether a commit is in flight, and the size of the
producer buffer.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from stream_app.app import app
from stream_app.producer_flush import in_flight
from stream_app.settings import parse_flag
from stream_app.web.permissions import Permission
from stream_app.web.views import page


def _consumer_state() -> dict[str, Any]:
    consumer: Any = app.consumer
    out: dict[str, Any] = {
        "commit_in_flight": consumer._commit_fut is not None,
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


if parse_flag("WEDDING_DEBUG", os.environ.get("WEDDING_DEBUG", "0")):

    @page("/debug/consumer", permission=Permission.DEBUG_READ)
    async def debug_consumer(self: Any, request: web.Request) -> web.StreamResponse:
        """faust's offset bookkeeping (see the module docstring)."""
        return web.json_response(_consumer_state(), dumps=lambda o: json.dumps(o, default=str))
