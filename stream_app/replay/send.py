"""``wedding-engine send TOPIC [FILE]``: produce events written as JSON, one per line.

For trying the engine and for small feeds: every line of FILE (standard input when ``-`` or
left out; blank lines skipped; a UTF-8 byte order mark before the first line, as some editors
write, is dropped) is one event of the topic's schema (:mod:`stream_app.schemas`). All lines
are validated first, with the decoder the fold agents use and against the largest event they
take (:data:`stream_app.schemas.base.MAX_EVENT_BYTES`, 900,000 bytes); a bad line, or an input
without events, stops the command before anything is sent, naming the line, the field and the
reason. Each event is keyed as its agent expects, ``organization_id/<entity>``
(:data:`INPUTS`), and produced byte for byte as written, with an idempotent producer waiting
for every acknowledgement (:func:`stream_app.replay.produce.produce_events`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import msgspec

from stream_app.errors import WeddingError, cut
from stream_app.replay.produce import produce_events
from stream_app.schemas import (
    BookingEvent,
    ClientInteractionEvent,
    EventValidationError,
    PaymentEvent,
    SupplierActivityEvent,
    decode_event,
)
from stream_app.schemas.base import MAX_EVENT_BYTES
from stream_app.topics import (
    CLIENT_INTERACTIONS,
    PAYMENT_EVENTS,
    SUPPLIER_ACTIVITIES,
    WEDDING_BOOKINGS,
)

INPUTS: dict[str, tuple[type[msgspec.Struct], str]] = {
    WEDDING_BOOKINGS: (BookingEvent, "venue_id"),
    PAYMENT_EVENTS: (PaymentEvent, "booking_id"),
    CLIENT_INTERACTIONS: (ClientInteractionEvent, "client_id"),
    SUPPLIER_ACTIVITIES: (SupplierActivityEvent, "supplier_id"),
}
"""The input topics: the event schema of each and the field naming the entity of its key
(the fold agents', :mod:`stream_app.agents`)."""

MAX_EVENTS = 1_000_000
"""Most events one ``send`` produces (a larger feed is a job for a Kafka client)."""

BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark."""


class SendError(WeddingError, ValueError):
    """A line that is not an event of the topic: ``line`` (1-based; 0 for the topic or the
    input as a whole), ``field`` (JSON path) and ``reason``."""

    def __init__(self, line: int, field: str, reason: str) -> None:
        super().__init__(f"line {line}: {field}: {reason}" if line else f"{field}: {reason}")
        self.line = line
        self.field = field
        self.reason = reason


def keyed_events(topic: str, lines: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of every event in ``lines`` (JSON, one per line), validated.

    Raises:
        SendError: ``topic`` is not an input topic, there are no events or more than
            :data:`MAX_EVENTS`, or a line is not a valid event of the topic or is longer than
            :data:`MAX_EVENT_BYTES` (the first such line).
    """
    if topic not in INPUTS:
        raise SendError(0, "topic", f"{topic!r} is not an input topic ({', '.join(INPUTS)})")
    schema, entity = INPUTS[topic]
    out: list[tuple[bytes, bytes]] = []
    for number, raw in enumerate(lines, start=1):
        value = raw.strip()
        if number == 1 and value.startswith(BOM):
            value = value[len(BOM) :].strip()
        if not value:
            continue
        if len(out) >= MAX_EVENTS:
            raise SendError(0, "$", f"more than {MAX_EVENTS:,} events: use a Kafka client")
        if len(value) > MAX_EVENT_BYTES:
            raise SendError(
                number, "$", f"{len(value):,} bytes; an event is at most {MAX_EVENT_BYTES:,}"
            )
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SendError(number, "$", _not_utf8(value, exc)) from None
        try:
            event = decode_event(value, schema)
        except EventValidationError as exc:
            raise SendError(number, exc.field, exc.reason + _hint(topic, value, exc)) from None
        repeated = _repeated_key(value)
        if repeated is not None:
            raise SendError(
                number,
                repeated,
                "repeated key: which value was meant is unknown (the HTTP API refuses it too)",
            )
        org: str = event.organization_id  # type: ignore[attr-defined]
        out.append((f"{org}/{getattr(event, entity)}".encode(), value))
    if not out:
        raise SendError(0, "$", "no events: the input is empty or only blank lines")
    return out


def _repeated_key(value: bytes) -> str | None:
    """``$.<key>`` of the key the event's object repeats (``$..<key>`` when only a nested
    object repeats one), else None. msgspec keeps the last value of a repeated key silently;
    the standard library's ``json`` shows every object's pairs (innermost first, the event's
    own object last) through ``object_pairs_hook``."""
    repeats: list[str | None] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        repeats.append(next((k for i, k in enumerate(keys) if k in keys[:i]), None))
        return dict(pairs)

    try:
        json.loads(value, object_pairs_hook=pairs_hook)
    except (ValueError, RecursionError):
        return None
    if repeats and repeats[-1] is not None:
        return f"$.{cut(repeats[-1], 64)}"
    inner = next((k for k in repeats if k is not None), None)
    return None if inner is None else f"$..{cut(inner, 64)}"


_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def _not_utf8(value: bytes, exc: UnicodeDecodeError) -> str:
    """Why a line is refused before it is read as JSON: not UTF-8, and UTF-16 (a byte-order
    mark, as Windows tools write) named as such."""
    reason = f"not valid UTF-8: {exc.reason} at byte {exc.start}"
    if value.startswith(_UTF16_MARKS):
        reason += (
            "; the input is UTF-16 (it starts with a byte-order mark): events are UTF-8 JSON,"
            " convert it first, e.g. `iconv -f UTF-16 -t UTF-8`"
        )
    return reason


def _hint(topic: str, value: bytes, exc: EventValidationError) -> str:
    """What the refused line probably is, to add to the reason (``""`` when nothing is
    likely): an event of another input topic, a JSON array, or an event spread over lines."""
    for other, (schema, _) in INPUTS.items():
        if other == topic:
            continue
        try:
            decode_event(value, schema)
        except EventValidationError:
            continue
        return f"; it is a valid event of {other}: send it there"
    if value.startswith(b"["):
        return "; write one JSON object per line (JSON Lines), not an array"
    if exc.field == "$" and "truncated" in exc.reason:
        return "; an event spread over several lines? write each on one line"
    return ""


async def send_events(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> int:
    """Produce ``events`` to ``topic`` (every acknowledgement awaited); how many were sent.

    Raises:
        aiokafka.errors.KafkaError: the broker refused or could not be reached.
    """
    return await produce_events(bootstrap, topic, events)
