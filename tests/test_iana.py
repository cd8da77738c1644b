"""IANA zone names: the database's zones are accepted, the host's own entries are not."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from stream_app import iana


@pytest.mark.parametrize("name", ["Europe/Lisbon", "UTC", "Etc/GMT-14", "America/Argentina/Salta"])
def test_a_zone_of_the_database_is_its_zoneinfo(name: str) -> None:
    assert iana.zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name", ["localtime", "posixrules", "Factory", "right/UTC", "posix/UTC", "Europe", "", "utc"]
)
def test_a_host_entry_a_folder_or_another_spelling_is_refused(name: str) -> None:
    with pytest.raises(ValueError) as refused:
        iana.zone(name)
    assert str(refused.value) == f"{name!r} is not an IANA time zone"


@pytest.mark.parametrize(
    ("name", "instead"),
    [
        ("EST", "America/New_York (with daylight saving time) or America/Panama (without)"),
        ("EST5EDT", "America/New_York"),
        ("PST8PDT", "America/Los_Angeles"),
        ("CET", "Europe/Paris, Europe/Berlin or your city's zone"),
        ("WET", "Europe/Lisbon"),
    ],
)
def test_a_legacy_name_is_refused_naming_the_city_zone(name: str, instead: str) -> None:
    """A trial user in New York named ``EST`` (no daylight saving time): accepted, it ran their
    reports an hour late all summer."""
    with pytest.raises(ValueError) as refused:
        iana.zone(name)
    assert str(refused.value) == (
        f"{name!r} is a legacy zone name that reads differently from one tzdata release to"
        f" another; name the city's zone, e.g. {instead}"
    )
    for city in instead.replace(" or ", ", ").split(", "):
        if "/" in city:
            assert iana.zone(city.split(" ")[0]) == ZoneInfo(city.split(" ")[0])


def test_fixed_offsets_stay_available_under_their_own_names() -> None:
    """Who wants UTC−5 all year names it so (POSIX sign: Etc/GMT+5 is five hours behind)."""
    summer = datetime(2026, 7, 1, 12, tzinfo=iana.zone("Etc/GMT+5"))
    assert summer.utcoffset() == timedelta(hours=-5)
