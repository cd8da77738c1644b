"""``wedding-engine send``: events written as JSON Lines, validated, keyed as the agents expect."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_app.cli import main
from stream_app.devservices.workers import WorkerProcess
from stream_app.lag import wait_for_lag_zero
from stream_app.replay.send import BOM, SendError, keyed_events, send_events
from stream_app.schemas import BookingEvent, decode_event
from stream_app.schemas.base import MAX_EVENT_BYTES
from stream_app.settings import Settings
from stream_app.topics import (
    CLIENT_INTERACTIONS,
    PAYMENT_EVENTS,
    SUPPLIER_ACTIVITIES,
    WEDDING_BOOKINGS,
)
from tests.e2e.helpers import venue_periods

ORG = "send-cli-org"
BASE = {"schema_version": 1, "organization_id": ORG, "occurred_at": "2026-03-01T10:15:00Z"}
BOOKING = {
    **BASE,
    "event_id": "s-1",
    "event_type": "booking_created",
    "booking_id": "b-1",
    "venue_id": "hall",
    "service_date": "2026-06-20",
    "amount_minor": 450_000,
    "currency": "EUR",
}
PAYMENT = {
    **BASE,
    "event_id": "s-2",
    "event_type": "payment_received",
    "payment_id": "p-1",
    "booking_id": "b-1",
    "amount_minor": 100_00,
    "currency": "EUR",
    "supplier_id": None,
}
INTERACTION = {**BASE, "event_id": "s-3", "event_type": "inquiry", "client_id": "c-9"}
ACTIVITY = {
    **BASE,
    "event_id": "s-4",
    "event_type": "task_assigned",
    "supplier_id": "sup-7",
    "task_id": "t-1",
    "due_at": None,
    "person_id": "p-1",
}


def line(doc: dict[str, object]) -> bytes:
    return orjson.dumps(doc) + b"\n"


@pytest.mark.parametrize(
    ("topic", "doc", "key"),
    [
        (WEDDING_BOOKINGS, BOOKING, f"{ORG}/hall"),
        (PAYMENT_EVENTS, PAYMENT, f"{ORG}/b-1"),
        (CLIENT_INTERACTIONS, INTERACTION, f"{ORG}/c-9"),
        (SUPPLIER_ACTIVITIES, ACTIVITY, f"{ORG}/sup-7"),
    ],
)
def test_each_input_topic_keys_its_events_as_its_agent_expects(
    topic: str, doc: dict[str, object], key: str
) -> None:
    events = keyed_events(topic, [b"\n", line(doc), b"   \n"])
    assert events == [(key.encode(), orjson.dumps(doc))]


def test_the_first_bad_line_is_named_with_its_field_and_nothing_is_kept() -> None:
    bad = {**BOOKING, "event_id": "s-9", "amount_minor": -5}
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [line(BOOKING), b"\n", line(bad), b"{not json\n"])
    assert (caught.value.line, caught.value.field) == (3, "$.amount_minor")
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [b"{not json\n"])
    assert (caught.value.line, caught.value.field) == (1, "$")
    odd = line(BOOKING).replace(b"b-1", b"b-\xff")
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [odd])
    # the byte's position in the line (the s15 fresh user was told its place in the string)
    at = odd.index(b"\xff")
    assert at > 10
    assert str(caught.value).endswith(
        f"line 1: $: not valid UTF-8: invalid start byte at byte {at}"
    ), str(caught.value)
    with pytest.raises(SendError, match="'late-events' is not an input topic"):
        keyed_events("late-events", [line(BOOKING)])


def test_a_refusal_says_what_the_line_probably_is() -> None:
    """An event of another input topic, a JSON array, an event spread over lines."""
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [line(PAYMENT)])
    assert str(caught.value) == (
        "line 1: $.event_type: Invalid enum value 'payment_received' (allowed:"
        " booking_cancelled, booking_created); it is a valid event of payment-events:"
        " send it there"
    )
    with pytest.raises(SendError) as caught:
        keyed_events(PAYMENT_EVENTS, [orjson.dumps([BOOKING, BOOKING])])
    assert str(caught.value) == (
        "line 1: $: Expected `object`, got `array`; write one JSON object per line"
        " (JSON Lines), not an array"
    )
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [b"{\n", b'  "schema_version": 1,\n'])
    assert str(caught.value).startswith("line 1: $: not valid JSON: ")
    assert str(caught.value).endswith(
        "; an event spread over several lines? write each on one line"
    )
    with pytest.raises(SendError) as caught:  # nothing likely: no hint
        keyed_events(WEDDING_BOOKINGS, [line({**BOOKING, "amount_minor": -5})])
    assert str(caught.value) == "line 1: $.amount_minor: Expected `int` >= 0"


def test_a_line_longer_than_kafka_takes_is_refused_before_anything_is_sent() -> None:
    # valid JSON padded with blanks between fields: the schema accepts it, Kafka would not
    padded = line(BOOKING).replace(b'"venue_id"', b" " * MAX_EVENT_BYTES + b'"venue_id"')
    assert decode_event(padded, BookingEvent).venue_id == "hall"
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [line(BOOKING), padded, line(BOOKING)])
    assert (caught.value.line, caught.value.field) == (2, "$")
    assert caught.value.reason == f"{len(padded) - 1:,} bytes; an event is at most 900,000"
    # at the limit it is taken
    exact = line(BOOKING).replace(b'"venue_id"', b" " * 10 + b'"venue_id"')
    fill = MAX_EVENT_BYTES - len(exact.strip())
    exact = exact.replace(b'"venue_id"', b" " * fill + b'"venue_id"')
    assert len(exact.strip()) == MAX_EVENT_BYTES
    assert len(keyed_events(WEDDING_BOOKINGS, [exact])) == 1


def test_a_byte_order_mark_before_the_first_line_is_dropped_elsewhere_refused() -> None:
    events = keyed_events(WEDDING_BOOKINGS, [BOM + line(BOOKING)])
    assert events == [(f"{ORG}/hall".encode(), orjson.dumps(BOOKING))]
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [line(BOOKING), BOM + line(BOOKING)])
    assert (caught.value.line, caught.value.field) == (2, "$")


def test_a_utf16_file_is_named_as_such() -> None:
    """A file saved as UTF-16 (Windows editors) was 'malformed JSON at byte 0'."""
    utf16 = line(BOOKING).decode().encode("utf-16")  # FF FE, then two bytes a character
    assert utf16.startswith(b"\xff\xfe")
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [utf16])
    assert (caught.value.line, caught.value.field) == (1, "$")
    assert caught.value.reason == (
        "not valid UTF-8: invalid start byte at byte 0; the input is UTF-16 (it starts with a"
        " byte-order mark): events are UTF-8 JSON, convert it first, e.g. `iconv -f UTF-16 -t"
        " UTF-8`"
    )
    latin1 = b"\xe9" + line(BOOKING)  # not UTF-8, not UTF-16: no hint
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [line(BOOKING), latin1])
    assert (caught.value.line, caught.value.reason) == (
        2,
        "not valid UTF-8: invalid continuation byte at byte 0",
    )


def test_an_input_without_events_is_refused() -> None:
    for lines in ([], [b"\n", b"  \n"], [BOM + b"\n"]):
        with pytest.raises(SendError) as caught:
            keyed_events(WEDDING_BOOKINGS, lines)
        assert (caught.value.line, caught.value.field) == (0, "$")
        assert "no events" in caught.value.reason


def test_the_command_refuses_a_bad_file_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line(BOOKING) + line({**BOOKING, "currency": "EUX"}))
    assert main(["send", WEDDING_BOOKINGS, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("send: line 2: $.currency: ") and "(nothing was sent)" in err
    assert main(["send", WEDDING_BOOKINGS, str(path) + ".missing"]) == 2
    capsys.readouterr()
    path.write_bytes(b"\n")
    assert main(["send", WEDDING_BOOKINGS, str(path)]) == 2
    assert capsys.readouterr().err == (
        "send: $: no events: the input is empty or only blank lines (nothing was sent)\n"
    )
    # a field name of the line is echoed escaped (no terminal escape) and cut (an attacker's
    # round: control bytes reached the terminal, a 200 KB name was printed whole)
    path.write_bytes(line({**BOOKING, "\x1b[2Jx": 1}))
    assert main(["send", WEDDING_BOOKINGS, str(path)]) == 2
    assert capsys.readouterr().err == (
        "send: line 1: $.\\u001b[2Jx: unknown field (nothing was sent)\n"
    )
    path.write_bytes(line({**BOOKING, "y" * 200_000: 1}))
    assert main(["send", WEDDING_BOOKINGS, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("send: line 1: $.yyy") and len(err) < 2_100, len(err)
    assert err.endswith(" characters) (nothing was sent)\n")


async def test_sent_events_are_folded_by_the_worker(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    second = {**BOOKING, "event_id": "s-5", "amount_minor": 50_000}
    events = keyed_events(WEDDING_BOOKINGS, [line(BOOKING), line(second), line(BOOKING)])
    assert await send_events(settings.kafka_bootstrap, WEDDING_BOOKINGS, events) == 3
    await wait_for_lag_zero(settings.kafka_bootstrap, "wedding-tests", WEDDING_BOOKINGS, 300)
    (june,) = await venue_periods(
        main_worker.url, settings, ORG, "hall", "month", "2026-06", "2026-06"
    )
    # the third line repeats the first event: counted once
    assert (june["bookings"], june["revenue_minor"]) == (2, {"EUR": 500_000})


def test_a_repeated_key_is_refused_as_the_http_api_refuses_it() -> None:
    """A trial user's line with ``occurred_at`` twice was sent (msgspec keeps the last)."""
    twice = line(BOOKING).replace(
        b'"venue_id"', b'"occurred_at": "2026-01-01T00:00:00Z", "venue_id"'
    )
    assert decode_event(twice, BookingEvent).venue_id == "hall"  # the decoder takes it
    with pytest.raises(SendError) as caught:
        keyed_events(WEDDING_BOOKINGS, [line(BOOKING), twice])
    assert (caught.value.line, caught.value.field) == (2, "$.occurred_at")
    assert caught.value.reason.startswith("repeated key: which value was meant is unknown")
