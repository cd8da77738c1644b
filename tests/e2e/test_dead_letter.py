"""Malformed booking events reach the dead-letter topic with their reason; valid ones count."""

from __future__ import annotations

import hashlib
import re

import aiohttp
import orjson

from stream_app.agents.deadletter import CUT_BYTES
from stream_app.deadletters import describe, read_dead_letters
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.settings import Settings
from stream_app.topics import DEAD_LETTER, WEDDING_BOOKINGS
from tests.e2e.helpers import read_topic, send, venue_periods

ORG = "dlq-test-org"
KEY = f"{ORG}/v1".encode()


async def latency_count(base_url: str) -> float:
    """The worker's ``wedding_end_to_end_latency_seconds_count`` for ``wedding-bookings``."""
    async with aiohttp.ClientSession(base_url) as s, s.get("/metrics") as r:
        text = await r.text()
    m = re.search(
        r'wedding_end_to_end_latency_seconds_count\{topic="wedding-bookings"\} (\S+)', text
    )
    return float(m.group(1)) if m else 0.0


def event(n: int, **changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schema_version": 1,
        "event_id": f"dlq-{n}",
        "organization_id": ORG,
        "occurred_at": "2026-03-01T09:00:00Z",
        "event_type": "booking_created",
        "booking_id": f"b-{n}",
        "venue_id": "v1",
        "service_date": "2026-07-04",
        "amount_minor": 100_00,
        "currency": "EUR",
    }
    doc.update(changes)
    return doc


MALFORMED: list[tuple[bytes, bytes, str]] = [
    (KEY, b"{this is not json", "$"),
    (KEY, orjson.dumps({k: v for k, v in event(2).items() if k != "currency"}), "$.currency"),
    (KEY, orjson.dumps(event(3, amount_minor="100")), "$.amount_minor"),
    (KEY, orjson.dumps(event(4, currency="EUX")), "$.currency"),
    (KEY, orjson.dumps(event(5, amount_minor=99.5)), "$.amount_minor"),
    (KEY, orjson.dumps(event(6, occurred_at="2026-03-01T09:00:00")), "$.occurred_at"),
    (b"other-org/v1", orjson.dumps(event(7)), "key"),
    # from the far future: it would close every event-time window of the organisation
    (KEY, orjson.dumps(event(9, occurred_at="2099-01-01T00:00:00Z")), "$.occurred_at"),
    # bad UTF-8 inside a JSON string: msgspec raises UnicodeDecodeError (it stopped the agent)
    (KEY, orjson.dumps(event(10, booking_id="b-X")).replace(b"b-X", b"b-\xff"), "$"),
    # a terminal escape sequence: dead-lettered, and shown escaped by `dead-letters`
    (KEY, b"\x1b]0;owned\x07{", "$"),
]


# larger than the worker's producer sends (1,000,000 bytes a record), which the broker takes:
# its whole copy could not be sent, and the batch failed again and again for every tenant
BIG = b'{"x":"' + b"A" * 1_040_000 + b'"}'


async def test_each_malformed_case_is_dead_lettered_and_valid_events_still_count(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    first = (KEY, orjson.dumps(event(1)))
    # after the bad ones: a valid event, and a duplicate of the first
    after = [(KEY, orjson.dumps(event(8))), first]
    bad = [(key, value) for key, value, _ in MALFORMED]
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    latencies_before = await latency_count(main_worker.url)
    await send(settings.kafka_bootstrap, WEDDING_BOOKINGS, [first, *bad, (KEY, BIG), *after])
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    # the end-to-end latency counts the two events folded, not the dead letters nor the re-send
    assert await latency_count(main_worker.url) - latencies_before == 2

    dead = {rec.value: rec for rec in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)}
    for _key, value, field in MALFORMED:
        assert value in dead, f"not dead-lettered: {value!r}"
        headers = dict(dead[value].headers)
        assert headers["dlq.field"] == field.encode()
        assert headers["dlq.reason"].startswith(field.encode() + b": ")
        assert headers["dlq.source.topic"] == WEDDING_BOOKINGS.encode()
    assert b"EUX" in dict(dead[MALFORMED[3][1]].headers)["dlq.reason"]
    big = dict(dead[BIG[:CUT_BYTES]].headers)
    assert big["dlq.reason"] == b"$: 1,040,008 bytes; an event is at most 900,000"
    assert big["dlq.value.bytes"] == b"1040008"
    assert big["dlq.value.sha256"] == hashlib.sha256(BIG).hexdigest().encode()

    # read back as the operator's `wedding-engine dead-letters --organization` does: the
    # organisation's records (by key or value), newest last; the one keyed other-org whose
    # value names ORG is listed under both without its value
    # (on its own partition, so its place among the others depends on the timestamps)
    ours = [(value, field) for key, value, field in MALFORMED if key == KEY]
    ours.append((BIG[:CUT_BYTES], "$"))
    letters = await read_dead_letters(settings.kafka_bootstrap, organization=ORG, limit=100)
    assert [(d.value, d.field) for d in letters if d.key == KEY] == ours
    (mixed,) = [d for d in letters if d.key != KEY]
    assert (mixed.key, mixed.value, mixed.field) == (b"other-org/v1", None, "key")
    assert mixed.withheld == f"the key names organisation 'other-org', the value '{ORG}'"
    others = await read_dead_letters(settings.kafka_bootstrap, organization="other-org", limit=100)
    assert [(d.key, d.value, d.withheld) for d in others] == [
        (b"other-org/v1", None, f"the key names organisation 'other-org', the value '{ORG}'")
    ]
    assert all(d.source.startswith(f"{WEDDING_BOOKINGS}/") for d in letters)
    assert all(d.reason.startswith(d.field + ": ") for d in letters)
    newest = await read_dead_letters(settings.kafka_bootstrap, organization=ORG, limit=2)
    assert [(d.partition, d.offset) for d in newest] == [
        (d.partition, d.offset) for d in letters[-2:]
    ]
    (shown,) = [describe(d) for d in letters if d.value == MALFORMED[-1][1]]
    assert shown[4] == "  value:  \\x1b]0;owned\\x07{"
    (shown,) = [describe(d) for d in letters if d.value == BIG[:CUT_BYTES]]
    assert shown[4].endswith("[the copy kept the first 65,536 of 1,040,008 bytes]")

    (july,) = await venue_periods(
        main_worker.url, settings, ORG, "v1", "month", "2026-07", "2026-07"
    )
    assert (july["bookings"], july["revenue_minor"]) == (2, {"EUR": 200_00})
