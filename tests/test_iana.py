"""IANA zone names: the database's zones are accepted, the host's own entries are not."""

from __future__ import annotations

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
