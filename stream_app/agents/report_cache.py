"""The report cache's writer agent: ``report-cache`` messages into the ``report-cache`` table.

Level 2 of the report cache (:mod:`stream_app.reports.cache`); the topic and the table are
declared in :mod:`stream_app.topology`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import orjson

from stream_app.app import app
from stream_app.topology import report_cache_table, report_cache_topic


@app.agent(report_cache_topic)
async def cache_writer(stream: AsyncIterable[Any]) -> None:
    """Write each ``report-cache`` message into the ``report-cache`` table (level 2).

    The write happens in the message's own partition, so the table row and its changelog
    record sit in the partition of the key (a table write takes the current event's). A
    message with a null value deletes the entry (a tombstone in the table's changelog; sent by
    :func:`stream_app.reports.cache.purge_organization`).
    """
    async for event in stream.events():  # type: ignore[attr-defined]
        key = (event.message.key or b"").decode()
        if event.message.value is None:
            if key in report_cache_table:
                del report_cache_table[key]
        else:
            report_cache_table[key] = orjson.loads(event.message.value)
