"""The dead-letter topic: where a message that cannot be processed goes, with the reason.

The record keeps the original key, value bytes and headers unchanged; the reason travels in
added headers:

- ``dlq.reason``: what is wrong, naming the field (``$.amount_minor: Expected `int`...``);
- ``dlq.field``: the JSON path of the field (``$`` for an unreadable message, ``key``);
- ``dlq.source.topic`` / ``dlq.source.partition`` / ``dlq.source.offset``: where it came from;
- ``dlq.failed_at``: when it was dead-lettered (UTC, ISO 8601).

A message too large for the worker's producer (a record of at most 1,000,000 bytes, key and
headers included, while the broker takes a little more) cannot be copied whole: a copy over
:data:`COPY_MAX_BYTES` keeps the first :data:`CUT_BYTES` of its value (then of its key), its
original headers are left out, and ``dlq.value.bytes`` / ``dlq.value.sha256`` (and
``dlq.key.bytes`` / ``dlq.key.sha256``) say what was there (:func:`bounded_copy`). Without
that, one such message stopped its partition's fold for every tenant (the copy failed, the
batch was read again and failed again).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.types import EventT

from stream_app.errors import cut
from stream_app.topology import dead_letter_topic

COPY_MAX_BYTES = 900_000
"""Largest copy (key, value and header bytes together) sent whole."""

REASON_CHARS = 2_000
"""Characters of the reason (and the field) kept in a dead-letter record's headers."""

CUT_BYTES = 65_536
"""Bytes of a value (or key) kept in a copy over :data:`COPY_MAX_BYTES`."""

Headers = list[tuple[str, bytes]]


def _size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """The record's size as the producer measures it before refusing it (aiokafka's
    ``estimate_size_in_bytes``: the batch framing and each header's length fields count, so
    80,000 empty headers weigh some 160,000 bytes)."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def bounded_copy(
    key: bytes | None, value: bytes | None, original: Headers, added: Headers
) -> tuple[bytes | None, bytes | None, Headers]:
    """``(key, value, headers)`` of a copy within :data:`COPY_MAX_BYTES`: unchanged when it
    fits; else the value, then the key, cut to :data:`CUT_BYTES` with their sizes and SHA-256
    in ``dlq.value.*`` / ``dlq.key.*`` headers, and the original headers left out (their count
    in ``dlq.headers.dropped``)."""
    if _size(key, value, original + added) <= COPY_MAX_BYTES:
        return key, value, original + added
    notes: Headers = [("dlq.headers.dropped", str(len(original)).encode())] if original else []
    if value is not None and len(value) > CUT_BYTES:
        notes += [
            ("dlq.value.bytes", str(len(value)).encode()),
            ("dlq.value.sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = value[:CUT_BYTES]
    if key is not None and _size(key, value, notes + added) > COPY_MAX_BYTES:
        notes += [
            ("dlq.key.bytes", str(len(key)).encode()),
            ("dlq.key.sha256", hashlib.sha256(key).hexdigest().encode()),
        ]
        key = key[:CUT_BYTES]
    return key, value, added + notes


def dead_letter_headers(
    *, field: str, reason: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter record (see the module docstring); the field and the
    reason cut to :data:`REASON_CHARS` characters (a reason may quote the message)."""
    return [
        ("dlq.reason", cut(f"{field}: {reason}", REASON_CHARS).encode()),
        ("dlq.field", cut(field, REASON_CHARS).encode()),
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
    key, value, headers = bounded_copy(
        msg.key,
        msg.value,
        original,
        dead_letter_headers(
            field=field, reason=reason, topic=msg.topic, partition=msg.partition, offset=msg.offset
        ),
    )
    fut = await dead_letter_topic.send(key=key, value=value, headers=headers)
    await fut


def dead_letter_record(
    record: Any, *, topic: str, partition: int, field: str, reason: str
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """``(key, value, headers)`` of the dead-letter copy of a raw Kafka record
    (aiokafka ``ConsumerRecord``: ``key``, ``value``, ``headers``, ``offset``), its own
    ``dlq.*`` headers replaced by the reason's, cut to size by :func:`bounded_copy` (see the
    module docstring)."""
    original = [
        (str(k), v if isinstance(v, bytes) else str(v).encode())
        for k, v in (record.headers or [])
        if not str(k).startswith("dlq.")
    ]
    return bounded_copy(
        record.key,
        record.value,
        original,
        dead_letter_headers(
            field=field, reason=reason, topic=topic, partition=partition, offset=record.offset
        ),
    )
