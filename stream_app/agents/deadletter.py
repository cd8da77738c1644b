"""The dead-letter topic: where a message that cannot be processed goes, with the reason.

The record keeps the original key, value bytes and headers unchanged; the reason travels in
added headers:

- ``dlq.reason``: what is wrong, naming the field (``$.amount_minor: Expected `int`...``);
- ``dlq.field``: the JSON path of the field (``$`` for an unreadable message, ``key``);
- ``dlq.source.topic`` / ``dlq.source.partition`` / ``dlq.source.offset``: where it came from;
- ``dlq.failed_at``: when it was dead-lettered (UTC, ISO 8601).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from faust.types import EventT

from stream_app.topology import dead_letter_topic


def dead_letter_headers(
    *, field: str, reason: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter record (see the module docstring)."""
    return [
        ("dlq.reason", f"{field}: {reason}".encode()),
        ("dlq.field", field.encode()),
        ("dlq.source.topic", topic.encode()),
        ("dlq.source.partition", str(partition).encode()),
        ("dlq.source.offset", str(offset).encode()),
        ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
    ]


async def send_to_dead_letter(event: EventT[bytes], *, field: str, reason: str) -> None:
    """Publish ``event``'s original key and value to the dead-letter topic with the reason.

    Awaits the broker's acknowledgement, so the input offset is committed only after the
    dead-letter record is durable: a bad event is never lost.
    """
    msg = event.message
    raw_headers = msg.headers or []
    pairs = list(raw_headers.items()) if isinstance(raw_headers, Mapping) else list(raw_headers)
    original: list[tuple[str, bytes]] = [
        (str(k), v if isinstance(v, bytes) else str(v).encode())
        for k, v in pairs
        if not str(k).startswith("dlq.")
    ]
    fut = await dead_letter_topic.send(
        key=msg.key,
        value=msg.value,
        headers=original
        + dead_letter_headers(
            field=field, reason=reason, topic=msg.topic, partition=msg.partition, offset=msg.offset
        ),
    )
    await fut


def dead_letter_record(
    record: Any, *, topic: str, partition: int, field: str, reason: str
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of the dead-letter copy of a raw Kafka record
    (aiokafka ``ConsumerRecord``: ``key``, ``value``, ``headers``, ``offset``), its own
    ``dlq.*`` headers replaced by the reason's (see the module docstring)."""
    original = [
        (str(k), v if isinstance(v, bytes) else str(v).encode())
        for k, v in (record.headers or [])
        if not str(k).startswith("dlq.")
    ]
    return (
        record.key,
        record.value,
        original
        + dead_letter_headers(
            field=field, reason=reason, topic=topic, partition=partition, offset=record.offset
        ),
    )
