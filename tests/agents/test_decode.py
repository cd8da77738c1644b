"""A fold agent's decoding of a fetched batch (:func:`stream_app.agents.batch._decode`): which
records are dead-lettered, with which field and reason."""

from __future__ import annotations

import orjson
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from stream_app.agents.batch import _decode
from stream_app.runtime.consumer import BatchMessage
from stream_app.schemas.bookings import BookingEvent
from stream_app.topics import WEDDING_BOOKINGS

EVENT = {
    "schema_version": 1,
    "event_id": "e-1",
    "organization_id": "org-1",
    "occurred_at": "2026-06-01T10:00:00+00:00",
    "event_type": "booking_created",
    "booking_id": "b-1",
    "venue_id": "v-1",
    "service_date": "2026-09-12",
    "amount_minor": 100,
    "currency": "EUR",
}


def record(offset: int, value: bytes, key: bytes = b"org-1/v-1") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        WEDDING_BOOKINGS, 0, offset, 1_700_000_000_000 + offset, 0, key, value, None,
        len(key), len(value), [],
    )  # fmt: skip


def test_bad_utf8_is_dead_lettered_naming_its_byte_in_the_message() -> None:
    good = orjson.dumps(EVENT)
    odd = good.replace(b'"b-1"', b'"b-\xff"')
    batch = BatchMessage.of(TP(WEDDING_BOOKINGS, 0), [record(7, good), record(8, odd)], 1)
    valid, bad = _decode(
        batch, BookingEvent, lambda e: f"{e.organization_id}/{e.venue_id}".encode()
    )
    assert [(offset, arrival, e.event_id) for offset, arrival, e in valid] == [
        (7, 1_700_000_000_007, "e-1")
    ]
    at = odd.index(b"\xff")  # in the message, not in the string holding it
    assert at > 100
    assert [(r.offset, field, why) for r, field, why in bad] == [
        (8, "$", f"the value is not valid UTF-8: invalid start byte at byte {at}")
    ]
