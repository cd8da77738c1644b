"""A fold agent stopped by an error is counted per topic and logged with its topic in the
message template (so the log's repeat throttle keeps one line per topic)."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from stream_app.agents.bookings import bookings
from stream_app.agents.payments import payments_stream
from stream_app.logthrottle import RepeatThrottle
from stream_app.observability import FOLD_CRASHES, REGISTRY
from stream_app.topics import INPUT_TOPICS, PAYMENT_EVENTS, WEDDING_BOOKINGS


def crashes(topic: str) -> float:
    return FOLD_CRASHES.labels(topic)._value.get()  # type: ignore[no-any-return]


def test_each_topics_crash_is_counted_and_passes_the_throttle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = RepeatThrottle(window_s=60.0, clock=lambda: 0.0)
    before = crashes(WEDDING_BOOKINGS), crashes(PAYMENT_EVENTS)
    with caplog.at_level(logging.ERROR, logger="stream_app.agents.fold"):
        bookings.crashed(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"))
        payments_stream.crashed(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))
        bookings.crashed(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"))
    assert (crashes(WEDDING_BOOKINGS), crashes(PAYMENT_EVENTS)) == (before[0] + 2, before[1] + 1)
    records = [r for r in caplog.records if "the fold agent stopped" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in records] == [
        WEDDING_BOOKINGS,
        PAYMENT_EVENTS,
        WEDDING_BOOKINGS,
    ]
    assert records[0].getMessage() == (
        f"{WEDDING_BOOKINGS}: the fold agent stopped on UnicodeDecodeError: 'utf-8' codec"
        " can't decode byte 0xff in position 0: invalid; faust restarts it on the same batch"
    )
    assert records[0].exc_info is not None and records[0].exc_info[0] is UnicodeDecodeError
    # the two topics are two kinds: both first lines pass, the repeat within the window not
    assert [throttle.filter(r) for r in records] == [True, True, False]


def test_each_input_topic_has_its_crash_and_rewind_series_from_the_start() -> None:
    import stream_app.agents.interactions
    import stream_app.agents.suppliers  # noqa: F401 - the four fold agents registered

    text = generate_latest(REGISTRY).decode()
    for topic in INPUT_TOPICS:
        assert f'wedding_fold_crashes_total{{topic="{topic}"}}' in text
        assert f'wedding_stream_rewinds_total{{topic="{topic}"}}' in text
