"""Strict integers of query strings (:mod:`stream_app.web.numbers`)."""

from __future__ import annotations

import pytest

from stream_app.web.errors import ApiError
from stream_app.web.numbers import ascii_int, positive_int


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("7", 7), ("-3", -3), ("1000", 1000)])
def test_ascii_integers_are_read(raw: str, value: int) -> None:
    assert ascii_int(raw, "after_seq") == value


@pytest.mark.parametrize(
    "raw",
    # an attacker round: the fullwidth one was read as 1 (int() reads them all)
    ["\uff11", "\u0661", " 1", "1 ", "1_0", "+1", "01", "", "-", "1" * 19, "1.0", "\u00b2"],
)
def test_anything_else_is_a_400_naming_the_field(raw: str) -> None:
    with pytest.raises(ApiError) as caught:
        ascii_int(raw, "after_seq")
    e = caught.value
    assert (e.status, e.code, e.field) == (400, "invalid_field", "after_seq")
    assert e.reason == f"after_seq: {raw[:32]!r} is not an integer (ASCII digits)"


def test_positive_integers_keep_their_bound() -> None:
    assert positive_int("12", "limit", maximum=100) == 12
    with pytest.raises(ApiError, match=r"is not 1\.\.100"):
        positive_int("101", "limit", maximum=100)
