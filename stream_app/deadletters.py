"""Reading the dead-letter topic back: why each message there was set aside.

A fold agent copies a message it cannot process to ``dead-letter-events`` byte for byte, with
the reason in ``dlq.*`` headers (:mod:`stream_app.agents.deadletter`), and counts it in
``wedding_events_outcome_total{outcome="dead_lettered"}``. :func:`read_dead_letters` reads
the newest of them back (``wedding-engine dead-letters``), optionally those of one
organisation (:func:`attribution`: by the message key, ``organization_id/<entity>``, and by
the value's ``organization_id``; a record on which the two disagree is listed under both with
its value withheld, so one organisation's listing never carries a payload another's producer
wrote), and :func:`describe` turns one into printable lines with every control character escaped (a
message's bytes are whatever a producer sent: printed raw, escape sequences would reach the
operator's terminal).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.topics import DEAD_LETTER

SCAN_MAX = 100_000
"""Most records read back per partition (from its end): the newest are what an operator
looks for, and a flood of bad messages must not make the command read for minutes."""

SHOWN_BYTES = 300
"""Bytes of a message's key or value shown (the rest is elided, with its size)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-letter record.

    Attributes:
        partition / offset: where it is in the dead-letter topic.
        timestamp_ms: its Kafka timestamp (milliseconds since the epoch, UTC), or None.
        key / value: the original message's bytes.
        field: the JSON path of the field at fault (``$`` for an unreadable message, ``key``).
        reason: what is wrong, naming the field.
        source: ``topic/partition@offset`` of the original message.
        failed_at: when it was dead-lettered (ISO 8601, UTC).
    """

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    field: str
    reason: str
    source: str
    failed_at: str
    withheld: str | None = None
    """Why the value is not shown (it is then None), or None."""
    value_bytes: int | None = None
    """The original value's size when the copy kept only its start (``dlq.value.bytes``)."""


class _Owner(msgspec.Struct):
    organization_id: str


_NAMED = re.compile(rb'"organization_id"\s*:\s*"((?:[^"\\]|\\.){0,256})"')
"""An ``"organization_id": "<string>"`` member anywhere in a value's bytes."""

UNREADABLE = "?"
"""The organisation of a value that has an ``organization_id`` member whose string cannot be
read (not a string, ``null``): it may name anyone."""


def attribution(key: bytes | None, value: bytes | None) -> tuple[str | None, str | None]:
    """``(organisation of the key, organisation of the value)`` of a message: the key's part
    before its first ``/``; the value's ``organization_id`` as JSON decodes it (the last
    one, as the agents' decoder takes it), else, for a value that is not a JSON object naming
    one as a string (cut short, a byte order mark, bad UTF-8, nested too deep), the last
    ``"organization_id": "..."`` in its bytes, else :data:`UNREADABLE` when the member is
    there with another value, or when its bytes name two organisations (a duplicated
    member: the last one agreeing with the key said nothing of the first, an attacker
    round's finding); None where the key or the value names none."""
    key_org = None
    if key and b"/" in key:
        key_org = key.split(b"/", 1)[0].decode("utf-8", "backslashreplace")
    if not value:
        return key_org, None
    found = _NAMED.findall(value)
    if len(set(found)) > 1:  # two members naming different organisations: it may be either
        return key_org, UNREADABLE
    try:
        return key_org, msgspec.json.decode(value, type=_Owner).organization_id
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValidationError: a DecodeError
        pass
    if found:
        return key_org, found[-1].decode("utf-8", "backslashreplace")
    return key_org, UNREADABLE if b'"organization_id"' in value else None


def _listed(letter: DeadLetter, organization: str | None) -> DeadLetter | None:
    """``letter`` as listed for ``organization`` (all when None): None when it is not that
    organisation's; its value withheld when key and value name different organisations."""
    if organization is None:
        return letter
    key_org, value_org = attribution(letter.key, letter.value)
    if organization not in (key_org, value_org):
        return None
    if value_org is None or key_org is None or key_org == value_org:
        return letter
    if value_org == UNREADABLE:
        why = f"the key names organisation {key_org!r}, the value's organization_id is unreadable"
    else:
        why = f"the key names organisation {key_org!r}, the value {value_org!r}"
    return dataclasses.replace(letter, value=None, withheld=why)


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "backslashreplace")
    return ""


def _of(record: Any) -> DeadLetter:
    """The :class:`DeadLetter` of an aiokafka ``ConsumerRecord``."""
    headers: Sequence[tuple[str, bytes]] = list(record.headers or [])
    source = (
        f"{_header(headers, 'dlq.source.topic')}/{_header(headers, 'dlq.source.partition')}"
        f"@{_header(headers, 'dlq.source.offset')}"
    )
    return DeadLetter(
        partition=int(record.partition),
        offset=int(record.offset),
        timestamp_ms=record.timestamp,
        key=record.key,
        value=record.value,
        field=_header(headers, "dlq.field"),
        reason=_header(headers, "dlq.reason"),
        source=source,
        failed_at=_header(headers, "dlq.failed_at"),
        value_bytes=int(cut) if (cut := _header(headers, "dlq.value.bytes")).isdigit() else None,
    )


async def read_dead_letters(
    bootstrap: str,
    *,
    limit: int = 20,
    organization: str | None = None,
    topic: str = DEAD_LETTER,
) -> list[DeadLetter]:
    """The newest ``limit`` dead-letter records (of ``organization`` only, when given: those
    whose key or value names it, :func:`attribution`; values withheld where the two
    disagree), oldest first; at most :data:`SCAN_MAX`
    records per partition are read, from its end. Reads without a consumer group (commits
    nothing).

    Raises:
        ValueError: ``limit`` below 1.
        aiokafka.errors.KafkaError: the broker cannot be reached.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    tps = [
        TopicPartition(topic, p["partition"])
        for d in described
        if d.get("error_code", 0) == 0
        for p in d.get("partitions", [])
    ]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - SCAN_MAX))
        found: list[DeadLetter] = []
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    listed = _listed(_of(record), organization)
                    if listed is not None:
                        found.append(listed)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        found.sort(key=lambda d: (d.timestamp_ms or 0, d.partition, d.offset))
        return found[-limit:]
    finally:
        await consumer.stop()


def _printable(raw: bytes | None) -> str:
    """``raw`` as one line: UTF-8 with bad bytes as ``\\xNN``, every control character
    escaped, cut at :data:`SHOWN_BYTES` bytes."""
    if raw is None:
        return "(none)"
    text = raw[:SHOWN_BYTES].decode("utf-8", "backslashreplace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return shown if len(raw) <= SHOWN_BYTES else f"{shown}… ({len(raw):,} bytes)"


def _cut_note(letter: DeadLetter) -> str:
    if letter.value_bytes is None:
        return ""
    kept = len(letter.value or b"")
    return f" [the copy kept the first {kept:,} of {letter.value_bytes:,} bytes]"


def describe(letter: DeadLetter) -> list[str]:
    """Printable lines for one dead-letter record (control characters escaped)."""
    failed, source = _printable(letter.failed_at.encode()), _printable(letter.source.encode())
    return [
        f"{DEAD_LETTER}/{letter.partition}@{letter.offset}  failed {failed}  from {source}",
        f"  field:  {_printable(letter.field.encode())}",
        f"  reason: {_printable(letter.reason.encode())}",
        f"  key:    {_printable(letter.key)}",
        f"  value:  {_printable(letter.value)}{_cut_note(letter)}"
        if letter.withheld is None
        else f"  value:  (withheld: {_printable(letter.withheld.encode())})",
    ]
