"""Dead-letter copies stay within what the worker's producer sends (1,000,000 bytes a record):
a larger message is cut, with its size and digest in headers; a smaller one is copied whole."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from aiokafka.record.default_records import DefaultRecordBatchBuilder

from stream_app.agents.deadletter import (
    COPY_MAX_BYTES,
    CUT_BYTES,
    REASON_CHARS,
    bounded_copy,
    dead_letter_record,
)


def size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def record(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> object:
    return SimpleNamespace(key=key, value=value, headers=headers, offset=25)


def test_a_copy_that_fits_is_whole_with_its_headers() -> None:
    value = b"v" * (COPY_MAX_BYTES - 1_000)
    key, out, headers = dead_letter_record(
        record(b"org/v1", value, [("trace", b"t1"), ("dlq.reason", b"old")]),
        topic="wedding-bookings",
        partition=1,
        field="$",
        reason="the value is not JSON",
    )
    assert (key, out) == (b"org/v1", value)
    assert headers[0] == ("trace", b"t1")
    assert dict(headers)["dlq.reason"] == b"$: the value is not JSON"
    assert [k for k, _ in headers].count("dlq.reason") == 1


def test_a_larger_value_is_cut_with_its_size_and_digest() -> None:
    value = b'{"x":"' + b"A" * 1_040_000 + b'"}'
    key, out, headers = dead_letter_record(
        record(b"orgb/v2", value, [("trace", b"t1")]),
        topic="wedding-bookings",
        partition=1,
        field="$",
        reason="1,040,008 bytes; an event is at most 900,000",
    )
    found = dict(headers)
    assert key == b"orgb/v2" and out == value[:CUT_BYTES]
    assert found["dlq.value.bytes"] == b"1040008"
    assert found["dlq.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert found["dlq.headers.dropped"] == b"1" and "trace" not in found
    assert found["dlq.source.offset"] == b"25"
    assert size(key, out, headers) < COPY_MAX_BYTES


def test_a_huge_key_and_reason_are_cut_too() -> None:
    big_key = b"k" * 950_000
    key, value, headers = bounded_copy(big_key, b"{}", [], [("dlq.reason", b"r")])
    assert key == big_key[:CUT_BYTES] and value == b"{}"
    assert dict(headers)["dlq.key.bytes"] == b"950000"
    assert size(key, value, headers) < COPY_MAX_BYTES
    _, _, headers = dead_letter_record(
        record(big_key, b"{}", []), topic="t", partition=0, field="key", reason="x" * 900_000
    )
    reason = dict(headers)["dlq.reason"].decode()
    assert reason.startswith("key: xxx") and reason.endswith("… (900005 characters)")
    assert len(reason) < REASON_CHARS + 40


def test_headers_weigh_what_the_producer_counts_for_them() -> None:
    # 80,000 empty headers: 0 bytes of names and values, some 160,000 of length fields (the
    # attacker round's second shape: copied whole, then refused by the producer)
    value = b"v" * 860_008
    original = [("", b"")] * 80_000
    key, out, headers = bounded_copy(b"orgb/v2", value, original, [("dlq.reason", b"r")])
    assert dict(headers)["dlq.headers.dropped"] == b"80000"
    assert out == value[:CUT_BYTES] and len(headers) < 10
    assert DefaultRecordBatchBuilder.estimate_size_in_bytes(key, out, headers) < COPY_MAX_BYTES
    # what fits as the producer counts it is copied whole, headers and all
    small = [("h", b"")] * 1_000
    assert bounded_copy(b"k", b"{}", small, []) == (b"k", b"{}", small)
