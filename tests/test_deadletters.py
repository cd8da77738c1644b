"""Dead-letter records as the operator reads them: every control character escaped."""

from __future__ import annotations

from stream_app.deadletters import SHOWN_BYTES, DeadLetter, describe


def letter(**changes: object) -> DeadLetter:
    fields: dict[str, object] = {
        "partition": 2,
        "offset": 17,
        "timestamp_ms": 1_800_000_000_000,
        "key": b"org-a/v1",
        "value": b'{"amount_minor":"100"}',
        "field": "$.amount_minor",
        "reason": "$.amount_minor: Expected `int`, got `str`",
        "source": "wedding-bookings/1@345",
        "failed_at": "2026-12-06T12:00:00+00:00",
    }
    fields.update(changes)
    return DeadLetter(**fields)  # type: ignore[arg-type]


def test_a_record_is_five_lines_naming_where_from_the_field_and_the_reason() -> None:
    assert describe(letter()) == [
        "dead-letter-events/2@17  failed 2026-12-06T12:00:00+00:00  from wedding-bookings/1@345",
        "  field:  $.amount_minor",
        "  reason: $.amount_minor: Expected `int`, got `str`",
        "  key:    org-a/v1",
        '  value:  {"amount_minor":"100"}',
    ]


def test_escape_sequences_newlines_and_bad_utf8_are_shown_escaped() -> None:
    lines = describe(letter(value=b"\x1b[2J\x1b]0;pwned\x07line\nnext\xff\xfe", key=None))
    assert lines[3] == "  key:    (none)"
    assert lines[4] == "  value:  \\x1b[2J\\x1b]0;pwned\\x07line\\nnext\\xff\\xfe"
    assert all(c.isprintable() for line in lines for c in line)


def test_a_long_value_is_cut_with_its_size() -> None:
    value = b"x" * (SHOWN_BYTES + 50)
    assert describe(letter(value=value))[4] == f"  value:  {'x' * SHOWN_BYTES}… (350 bytes)"
