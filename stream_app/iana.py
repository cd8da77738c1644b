"""IANA time zone names: what a user may name as an organisation's or a schedule's zone.

A name is accepted when it is a zone of the IANA database as this machine's zone files (or
the ``tzdata`` package) list it (:func:`zoneinfo.available_timezones`), except the host's own
entries that are not IANA zones and would read differently from machine to machine:
``localtime`` (a link to the host's ``/etc/localtime``), ``posixrules``, ``Factory``, and the
``posix/`` and ``right/`` copies of the database (``right/`` counts leap seconds). An attacker
round stored ``localtime`` and ``posixrules`` as a schedule's zone: two workers on hosts set
to different zones would compute different fire times for one schedule.
"""

from __future__ import annotations

import functools
import zoneinfo
from zoneinfo import ZoneInfo

_HOST_ENTRIES = frozenset({"localtime", "posixrules", "Factory"})


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
        ValueError: ``name`` is not an IANA zone name (module docstring), with the name in
            the message (``'localtime' is not an IANA time zone``).
    """
    if name not in _names():
        raise ValueError(f"{name!r} is not an IANA time zone")
    return ZoneInfo(name)
