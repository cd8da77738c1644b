"""Strict parsing of integers in paths and query strings (part of the HTTP layer).

``str.isdigit()`` accepts "²", "①" and Arabic-Indic digits, which ``int()`` then refuses
(a 500) or reads ("٩٦" is 96, audited as "٩٦"); these accept ASCII digits only.
"""

from __future__ import annotations

import re

from stream_app.web.errors import ApiError

_POSITIVE = re.compile(r"[1-9][0-9]{0,17}")


def positive_int(raw: str, field: str, *, maximum: int | None = None) -> int:
    """``raw`` as a positive integer written in ASCII digits, no sign, no leading zero, at
    most 18 digits, and at most ``maximum`` when given.

    Raises:
        ApiError: 400 ``invalid_field`` naming ``field`` otherwise.
    """
    if _POSITIVE.fullmatch(raw) is None or (maximum is not None and int(raw) > maximum):
        bound = f"1..{maximum}" if maximum is not None else "a positive integer (ASCII digits)"
        raise ApiError(400, "invalid_field", f"{field}: {raw[:32]!r} is not {bound}", field=field)
    return int(raw)


_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")


def ascii_int(raw: str, field: str) -> int:
    """``raw`` as an integer written in ASCII digits (an optional ``-``, no ``+``, no
    leading zero, no spaces or underscores, at most 18 digits).

    ``int()`` reads "１" (fullwidth) and " 1_0 " too: an attacker round sent
    ``after_seq=１`` and was answered as for 1.

    Raises:
        ApiError: 400 ``invalid_field`` naming ``field`` otherwise.
    """
    if _INTEGER.fullmatch(raw) is None:
        raise ApiError(
            400,
            "invalid_field",
            f"{field}: {raw[:32]!r} is not an integer (ASCII digits)",
            field=field,
        )
    return int(raw)
