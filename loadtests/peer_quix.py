"""The Quix Streams side of ``bench_peer``: a 1-day tumbling window per key, exactly-once.

Run as its own process by :mod:`loadtests.bench_peer` (so that nothing else shares its
interpreter)::

    python -m loadtests.peer_quix --bootstrap HOST:PORT --topic T --group G --state-dir DIR \
        --events N --result FILE

Idiomatic Quix Streams 3.x: a ``StreamingDataFrame`` over the booking topic (JSON values,
event time = the event's ``occurred_at``), ``.tumbling_window(timedelta(days=1))`` with
``.agg(count=Count(), amount_minor=Sum("amount_minor"))`` and ``.current()``: every event
updates its key's window row and emits that row once (one window row per event, as the
product emits its changed rows; ``.final()`` would emit a row only when a window closes,
which for time-ordered events never happens to the last day). The application runs with
``processing_guarantee="exactly-once"`` and its default commit interval (5 s) until the
parent sends SIGTERM (Quix then commits its last checkpoint and returns from ``run``).

When it stops it writes one JSON document to ``FILE``::

    {"first_processed": <time.monotonic() of the first message processed>,
     "last_processed": <time.monotonic() when the N-th message was processed, or null>,
     "processed": <messages processed>,
     "windows": {"<key>|<window start ms>": [count, amount_minor sum], ...}}

``windows`` holds the last emitted value of every window row, kept by an ``.update`` that
stores each emitted row in a dict (one dict assignment per event, the only work beyond the
window; the check against an independent count is the parent's). ``time.monotonic`` is
system-wide on Linux, so the parent compares these times with its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Sum


def event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """Event time of a booking event: its ``occurred_at`` (ISO 8601, UTC) in epoch ms."""
    return int(datetime.fromisoformat(value["occurred_at"]).timestamp() * 1000)


def run(bootstrap: str, topic: str, group: str, state_dir: str, events: int) -> dict[str, Any]:
    """Fold ``topic`` until SIGTERM; return the timings and last window rows (see module)."""
    progress: dict[str, Any] = {"first_processed": None, "last_processed": None, "processed": 0}

    def on_processed(topic: str, partition: int, offset: int) -> None:
        n = progress["processed"] + 1
        progress["processed"] = n
        if n == 1:
            progress["first_processed"] = time.monotonic()
        if n == events:
            progress["last_processed"] = time.monotonic()

    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=state_dir,
        loglevel="WARNING",
        on_message_processed=on_processed,
    )
    windows: dict[str, list[int]] = {}

    def keep(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> None:
        k = key.decode() if isinstance(key, bytes) else str(key)
        windows[f"{k}|{value['start']}"] = [value["count"], value["amount_minor"]]

    src = app.topic(topic, value_deserializer="json", timestamp_extractor=event_time_ms)
    sdf = app.dataframe(src)
    sdf = (
        sdf.tumbling_window(timedelta(days=1))
        .agg(count=Count(), amount_minor=Sum("amount_minor"))
        .current()
    )
    sdf.update(keep, metadata=True)
    app.run()
    return {**progress, "windows": windows}


def main() -> None:
    """Parse the arguments, run the fold, write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.bootstrap, args.topic, args.group, args.state_dir, args.events)
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
