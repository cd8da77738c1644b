"""Inputs of token revocation and organisation registration an attacker round found
answered with a 500 or a false outage: refused with the reason instead (in-process)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stream_app.db.tenancy import check_name, check_time_zone
from stream_app.schedules.cron import CronExpressionError, preview
from stream_app.tokens import check_revocation_time


@pytest.mark.parametrize(
    "before",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),  # before year 1 in UTC
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
    ],
)
def test_a_revocation_time_before_1970_is_refused(before: datetime) -> None:
    with pytest.raises(ValueError) as refused:
        check_revocation_time(before)
    assert str(refused.value) == (
        f"{before.isoformat()} is before 1970 (UTC): no token is that old, so it would"
        " revoke nothing"
    )
    assert check_revocation_time(datetime(1970, 1, 1, tzinfo=UTC)).year == 1970


@pytest.mark.parametrize("minutes", [14 * 60 + 1, -(14 * 60 + 1), 23 * 60])
def test_a_revocation_time_with_an_offset_no_place_has_is_refused(minutes: int) -> None:
    """An attacker round: ``+14:01`` was accepted (the aggregation filters refuse such)."""
    before = datetime(2026, 12, 7, 22, 0, tzinfo=timezone(timedelta(minutes=minutes)))
    with pytest.raises(ValueError) as refused:
        check_revocation_time(before)
    assert str(refused.value) == (
        f"{before.isoformat()}: the offset is beyond ±14:00, no place's offset"
    )
    ok = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    assert check_revocation_time(ok) == ok


def test_a_revocation_time_past_the_end_of_the_calendar_in_utc_is_in_the_future() -> None:
    """A fresh user's finding: 9999-12-31T23:59:59-14:00 (after year 9999 in UTC) was
    refused as "before 1970"."""
    late = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(ValueError) as refused:
        check_revocation_time(late)
    assert str(refused.value).startswith(f"{late.isoformat()} is in the future"), refused.value


@pytest.mark.parametrize(
    "zone",
    [
        "Europe",
        "Etc",
        "America/",
        "E" * 300,
        "../etc/passwd",
        # the host's entries, not IANA zones: they read differently from machine to machine
        # (an attacker round stored them as a schedule's zone)
        "localtime",
        "posixrules",
        "Factory",
        "right/UTC",
        "posix/Europe/Lisbon",
    ],
)
def test_a_time_zone_that_is_a_folder_or_too_long_is_not_a_zone(zone: str) -> None:
    """``Europe`` (a folder of the zone database) raised IsADirectoryError, an OSError the
    API read as "postgresql/kafka cannot be reached" (503)."""
    with pytest.raises(ValueError) as refused:
        check_time_zone(zone)
    assert str(refused.value) == f"time_zone: {zone!r} is not an IANA time zone"
    for iana in ("Europe/Lisbon", "UTC", "Etc/GMT+5", "US/Eastern", "Australia/Lord_Howe"):
        assert check_time_zone(iana) == iana
    # a schedule's preview and definition read the zone the same way
    with pytest.raises(CronExpressionError) as bad_cron_zone:
        preview("0 8 * * *", zone, datetime(2026, 12, 7, tzinfo=UTC))
    assert bad_cron_zone.value.part == "time_zone"


NOT_TEXT = "(not text: XML, and so the PowerPoint and Excel files, cannot hold it)"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("evil\u202eexe.csv", "name: bidirectional control U+202E at 5"),
        ("\u2066x", "name: bidirectional control U+2066 at 1"),
        ("a\tb", "name: control character '\\t' at character 2"),
        ("", "name: must be 1-200 characters, got 0"),
        ("   ", "name: must hold a visible character (a letter, digit or symbol)"),
        ("\u3000", "name: must hold a visible character (a letter, digit or symbol)"),
        # a second round: nothing visible, or blanks that pass for spaces
        ("\u200d", "name: must hold a visible character (a letter, digit or symbol)"),
        ("\u0301", "name: must hold a visible character (a letter, digit or symbol)"),
        ("\ufe0f\u0301", "name: must hold a visible character (a letter, digit or symbol)"),
        ("City\u3164Hotel", "name: blank filler character U+3164 at 5"),
        ("\u2800", "name: blank filler character U+2800 at 1"),
        ("vb\u034f", "name: blank filler character U+034F at 3"),
        ("Caf\u200be", "name: invisible format character U+200B at 4 (zero width space)"),
        ("Caf\u200fe", "name: invisible format character U+200F at 4 (right-to-left mark)"),
        ("x\u061c", "name: invisible format character U+061C at 2 (arabic letter mark)"),
        ("\ufeffA", "name: invisible format character U+FEFF at 1 (zero width no-break space)"),
        ("a\u2028b", "name: line or paragraph separator U+2028 at 2"),
        # a Latin-1 é on a command line read as UTF-8 (surrogate escapes)
        (
            "Caf\udce9",
            "name: byte 0xE9 at character 4 is not UTF-8 (is the terminal's encoding UTF-8?)",
        ),
        ("\ud800", "name: not valid UTF-8 (an unpaired surrogate at 1)"),
        # an attacker round: accepted, it failed every PowerPoint report of the organisation
        (
            "bad \ufffe x",
            "name: noncharacter U+FFFE at 5 (not text: XML, and so the PowerPoint and Excel"
            " files, cannot hold it)",
        ),
        (
            "x\uffff",
            f"name: noncharacter U+FFFF at 2 {NOT_TEXT}",
        ),
        (
            "x\ufdd0",
            f"name: noncharacter U+FDD0 at 2 {NOT_TEXT}",
        ),
        (
            "x\U0010ffff",
            f"name: noncharacter U+10FFFF at 2 {NOT_TEXT}",
        ),
        # Zalgo: an attacker round stacked 199 marks; nine in a row are refused at the ninth
        (
            "Hall" + "\u0301" * 190,
            "name: more than 8 combining marks in a row at character 13 (text stacked over"
            " its neighbours' lines)",
        ),
        (
            "a" + "\u0300\u20dd" * 4 + "\u0301",
            "name: more than 8 combining marks in a row at character 10 (text stacked over"
            " its neighbours' lines)",
        ),
    ],
)
def test_a_display_name_that_misleads_or_breaks_a_format_is_refused(name: str, reason: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_name(name)
    assert str(refused.value) == reason
    assert check_name("Quinta da Regaleira — Sintra ❤") == "Quinta da Regaleira — Sintra ❤"
    # the joiners names need: a Persian name with a non-joiner, an emoji sequence
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert check_name(persian) == persian
    assert check_name("Studio \U0001f469\u200d\U0001f4bb") == "Studio \U0001f469\u200d\U0001f4bb"
    # real stacks of marks pass: Vietnamese (decomposed), eight in a row, marks after each base
    viet = unicodedata.normalize("NFD", "Nguyễn Thị Ánh")
    assert check_name(viet) == viet
    assert (
        check_name("a" + "\u0301" * 8 + "b" + "\u0301" * 8)
        == "a" + "\u0301" * 8 + "b" + "\u0301" * 8
    )
