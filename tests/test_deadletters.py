"""Dead-letter records as the operator reads them: every control character escaped."""

from __future__ import annotations

import pytest

from stream_app.cli import main
from stream_app.deadletters import SHOWN_BYTES, DeadLetter, _listed, attribution, describe


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


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (b"org-a/v1", b'{"organization_id":"org-a","venue_id":"v1"}', ("org-a", "org-a")),
        (b"org-a/v1", b'{"organization_id":"org-b"}', ("org-a", "org-b")),
        (b"org-a/v1", b"{not json", ("org-a", None)),
        (b"org-a/v1", b'{"organization_id":7}', ("org-a", None)),
        (b"org-a/v1", b'["org-b"]', ("org-a", None)),
        (b"no-slash", b'{"organization_id":"org-b"}', (None, "org-b")),
        (None, None, (None, None)),
        (b"org-\xff/v1", b'{"organization_id":"b-\xff"}', ("org-\\xff", None)),
    ],
)
def test_attribution_names_the_organisation_of_the_key_and_of_the_value(
    key: bytes | None, value: bytes | None, expected: tuple[str | None, str | None]
) -> None:
    assert attribution(key, value) == expected


def test_a_record_whose_key_and_value_disagree_is_listed_under_both_without_its_value() -> None:
    mixed = letter(key=b"org-a/v1", value=b'{"organization_id":"org-b","secret":"x"}')
    for org in ("org-a", "org-b"):
        listed = _listed(mixed, org)
        assert listed is not None and listed.value is None
        assert listed.withheld == "the key names organisation 'org-a', the value 'org-b'"
        assert describe(listed)[4] == (
            "  value:  (withheld: the key names organisation 'org-a', the value 'org-b')"
        )
    assert _listed(mixed, "org-c") is None
    assert _listed(mixed, None) is mixed  # unfiltered: the operator's whole view
    own = letter(key=b"org-a/v1", value=b"{not json")
    assert _listed(own, "org-a") is own
    assert _listed(own, "org-b") is None


def test_limit_below_one_is_refused_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    for bad, reason in (("0", "must be at least 1, got 0"), ("x", "'x' is not an integer")):
        with pytest.raises(SystemExit) as exited:
            main(["dead-letters", "--limit", bad])
        assert exited.value.code == 2
        assert f"argument --limit: {reason}" in capsys.readouterr().err
