"""The latency ceiling of a consume → produce hop on this machine: a bare aiokafka pipe.

Run by :mod:`loadtests.bench_latency` as a process of its own, beside (not instead of) the
worker. It consumes ``wedding-bookings`` in consumer group ``--group`` from the end of the
topic and, for every event, produces one message to ``--to`` with ``acks=all`` and awaits its
acknowledgement before it commits nothing and goes on (the worker's two hops in one: the
changelog's acknowledgement and the update): ``{"organization_id", "event_time", "window":
{"grain": "day"}}``, ``event_time`` copied from the event's ``occurred_at``. No decoding
beyond that, no state, no tables: what a stream processor cannot beat on this broker.

Usage: ``python -m loadtests.bare_pipe --bootstrap HOST:PORT --group G --to TOPIC``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.topics import WEDDING_BOOKINGS


async def pipe(bootstrap: str, group: str, to: str) -> None:
    """Consume ``wedding-bookings`` and produce one acknowledged message per event, for ever."""
    consumer = AIOKafkaConsumer(
        WEDDING_BOOKINGS,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="latest",
        fetch_max_wait_ms=20,  # the worker's WEDDING_FETCH_MAX_WAIT_MS
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            futures = []
            for records in batch.values():
                for rec in records:
                    doc = orjson.loads(rec.value)
                    out = {
                        "organization_id": doc["organization_id"],
                        "event_time": doc["occurred_at"],
                        "window": {"grain": "day"},
                    }
                    futures.append(await producer.send(to, orjson.dumps(out), key=rec.key))
            if futures:
                await asyncio.gather(*futures)
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    # a group's first join logs "Group Coordinator Request failed" / "Marking the coordinator
    # dead" while the broker elects the coordinator: retried by aiokafka, not a failure
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--to", required=True)
    args = parser.parse_args()
    asyncio.run(pipe(args.bootstrap, args.group, args.to))


if __name__ == "__main__":
    main()
