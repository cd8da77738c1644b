"""IANA time zone names: what a user may name as an organisation's or a schedule's zone.

A name is accepted when it is a zone of the IANA database as this machine's zone files (or
the ``tzdata`` package) list it (:func:`zoneinfo.available_timezones`), except the host's own
entries that are not IANA zones and would read differently from machine to machine:
``localtime`` (a link to the host's ``/etc/localtime``), ``posixrules``, ``Factory``, and the
``posix/`` and ``right/`` copies of the database (``right/`` counts leap seconds). An attacker
round stored ``localtime`` and ``posixrules`` as a schedule's zone: two workers on hosts set
to different zones would compute different fire times for one schedule.

Refused too, naming a zone to use instead: the legacy names tzdata keeps from before its
``Area/City`` scheme (its ``backward`` file, ``EST``, ``MST``, ``HST``, ``EST5EDT``,
``CST6CDT``, ``MST7MDT``, ``PST8PDT``, ``CET``, ``EET``, ``MET``, ``WET``). They read
differently from one tzdata release to another (release 2024b made ``EST`` a link to
America/Panama and ``EST5EDT`` one to America/New_York; before, fixed rules of their own), and
``EST`` has no daylight saving time: a trial user in New York who typed it got calendar months
cut at 01:00 local and reports an hour late all summer.
"""

from __future__ import annotations

import functools
import zoneinfo
from zoneinfo import ZoneInfo

_HOST_ENTRIES = frozenset({"localtime", "posixrules", "Factory"})

LEGACY = {
    "EST": "America/New_York (with daylight saving time) or America/Panama (without)",
    "EST5EDT": "America/New_York",
    "CST6CDT": "America/Chicago",
    "MST": "America/Denver (with daylight saving time) or America/Phoenix (without)",
    "MST7MDT": "America/Denver",
    "PST8PDT": "America/Los_Angeles",
    "HST": "Pacific/Honolulu",
    "CET": "Europe/Paris, Europe/Berlin or your city's zone",
    "MET": "Europe/Paris, Europe/Berlin or your city's zone",
    "EET": "Europe/Athens or your city's zone",
    "WET": "Europe/Lisbon",
}
"""Legacy zone names (module docstring) → the zones to name instead."""


@functools.cache
def _names() -> frozenset[str]:
    return frozenset(
        n
        for n in zoneinfo.available_timezones()
        if n not in _HOST_ENTRIES and not n.startswith(("posix/", "right/"))
    )


def zone(name: str) -> ZoneInfo:
    """The zone named ``name`` (``Europe/Lisbon``, ``UTC``).

    Raises:
        ValueError: ``name`` is not an IANA zone name or is a legacy one (module docstring),
            with the name in the message (``'localtime' is not an IANA time zone``).
    """
    instead = LEGACY.get(name)
    if instead is not None:
        raise ValueError(
            f"{name!r} is a legacy zone name that reads differently from one tzdata release to"
            f" another; name the city's zone, e.g. {instead}"
        )
    if name not in _names():
        raise ValueError(f"{name!r} is not an IANA time zone")
    return ZoneInfo(name)
