"""The faust-streaming side of ``bench_peer``: an idiomatic agent, no tuning.

A plain ``@app.agent`` over the booking topic (values decoded into a ``faust.Record``), that
per event adds one to a 1-day tumbling windowed table keyed by the message key (event time:
the event's ``occurred_at``) and adds ``amount_minor`` to a counter table keyed the same way
(two rows per event). faust's defaults otherwise: at-least-once, RocksDB store, commit every
2.8 s. This module must not import ``stream_app`` (importing it patches faust).

Run as its own process by :mod:`loadtests.bench_peer`::

    PEER_BOOTSTRAP=HOST:PORT PEER_APP_ID=ID PEER_DATADIR=DIR PEER_WEB_PORT=PORT \
    PEER_FIRST_FILE=FILE PEER_PARTITIONS=4 PEER_TOPIC=wedding-bookings \
        python -m loadtests.peer_faust worker --loglevel warn

At the first event it writes ``time.monotonic()`` to ``PEER_FIRST_FILE`` (the parent times
the fold from there). The counter table's changelog is ``<PEER_APP_ID>-peer-amounts-changelog``
(JSON integers under the JSON-encoded message key), which the parent reads to check the sums.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import faust


class Booking(faust.Record, serializer="json", isodates=True):
    """A ``wedding-bookings`` event as JSON (every field the producer writes)."""

    schema_version: int
    event_id: str
    organization_id: str
    occurred_at: datetime
    event_type: str
    booking_id: str
    venue_id: str
    service_date: str
    amount_minor: int
    currency: str


app = faust.App(
    os.environ.get("PEER_APP_ID", "bench-peer-faust"),
    broker=f"kafka://{os.environ.get('PEER_BOOTSTRAP', '127.0.0.1:9092')}",
    store="rocksdb://",
    datadir=os.environ.get("PEER_DATADIR", "faust-peer-data"),
    web_port=int(os.environ.get("PEER_WEB_PORT", "6066")),
    web_host="127.0.0.1",
    topic_partitions=int(os.environ.get("PEER_PARTITIONS", "4")),
    consumer_auto_offset_reset="earliest",
)
bookings_topic = app.topic(
    os.environ.get("PEER_TOPIC", "wedding-bookings"), key_type=str, value_type=Booking
)
per_day = (
    app.Table("peer-per-day", default=int)
    .tumbling(timedelta(days=1), expires=timedelta(days=30))
    .relative_to_field(cast(Any, Booking).occurred_at)  # the field descriptor, not a value
)
amounts = app.Table("peer-amounts", default=int)
_FIRST = Path(os.environ.get("PEER_FIRST_FILE", "faust-peer-first"))


@app.agent(bookings_topic)
async def fold(stream: Any) -> None:
    """Count each event in its key's day window and add its amount to its key's counter."""
    first = True
    async for key, event in stream.items():
        if first:
            await asyncio.to_thread(_FIRST.write_text, repr(time.monotonic()))
            first = False
        per_day[key] += 1
        amounts[key] += event.amount_minor


if __name__ == "__main__":
    app.main()
