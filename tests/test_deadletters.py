"""Dead-letter records as the operator reads them: every control character escaped."""

from __future__ import annotations

import pytest

from stream_app.cli import main
from stream_app.deadletters import (
    SHOWN_BYTES,
    UNREADABLE,
    DeadLetter,
    _listed,
    attribution,
    describe,
)


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
        (b"org-a/v1", b'{"organization_id":7}', ("org-a", UNREADABLE)),
        (b"org-a/v1", b'{"organization_id":null,"ORGANIZATION_ID":"org-b"}', ("org-a", "?")),
        (b"org-a/v1", b'["org-b"]', ("org-a", None)),
        (b"no-slash", b'{"organization_id":"org-b"}', (None, "org-b")),
        (None, None, (None, None)),
        # not JSON that decodes: the last "organization_id": "..." in the bytes
        (b"org-\xff/v1", b'{"organization_id":"b-\xff"}', ("org-\\xff", "b-\\xff")),
        (b"org-a/v1", b'{"organization_id": "org-b", "secret": "cut sh', ("org-a", "org-b")),
        (b"org-a/v1", b'\xef\xbb\xbf{"organization_id":"org-b"}', ("org-a", "org-b")),
        (b"org-a/v1", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, ("org-a", None)),
        (
            b"org-a/v1",
            b'{"a":' * 5_000 + b'{"organization_id":"org-b"}' + b"}" * 5_000,
            ("org-a", "org-b"),
        ),
        # a duplicated member naming two organisations: either may be meant (an attacker
        # round's value was listed in full to org-a, its last member agreeing with the key)
        (
            b"org-a/x1",
            b'{"organization_id":"org-b","organization_id":"org-a","secret":"B"}',
            ("org-a", UNREADABLE),
        ),
        (b"org-a/x1", b'{"organization_id":"org-a","organization_id":"org-a"}', ("org-a", "org-a")),
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
    # a value naming another organisation in a way JSON cannot read is withheld too
    for value, why in (
        (b'{"organization_id":"org-b","secret":"x', "the value 'org-b'"),
        (b'{"organization_id":["org-b"]}', "the value's organization_id is unreadable"),
        (
            b'{"organization_id":"org-b","organization_id":"org-a","secret":"B"}',
            "the value's organization_id is unreadable",
        ),
    ):
        listed = _listed(letter(key=b"org-a/v1", value=value), "org-a")
        assert listed is not None and listed.value is None
        assert listed.withheld == f"the key names organisation 'org-a', {why}"


def test_a_copy_cut_to_size_says_how_much_was_kept() -> None:
    cut = letter(value=b"x" * 65_536, value_bytes=1_040_008)
    assert describe(cut)[4] == (
        f"  value:  {'x' * SHOWN_BYTES}… (65,536 bytes) [the copy kept the first 65,536 of"
        " 1,040,008 bytes]"
    )


def test_limit_below_one_is_refused_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    for bad, reason in (("0", "must be at least 1, got 0"), ("x", "'x' is not an integer")):
        with pytest.raises(SystemExit) as exited:
            main(["dead-letters", "--limit", bad])
        assert exited.value.code == 2
        assert f"argument --limit: {reason}" in capsys.readouterr().err
