"""A bad delivery or retry field is named in the 400's ``field`` the way the README shows it
(``delivery.recipients``), not just ``delivery`` (found by a fresh user and the attack tests)."""

from __future__ import annotations

import pytest

from stream_app.web.schedules import _error_field


@pytest.mark.parametrize(
    ("message", "field", "expected"),
    [
        ("Object missing required field `recipients`", "delivery", "delivery.recipients"),
        ("Expected `float`, got `str` - at `$.timeout_s`", "delivery", "delivery.timeout_s"),
        ("delivery.secret: must be at least 16 characters", "delivery", "delivery.secret"),
        ("Expected `int`, got `str` - at `$.max_attempts`", "retry", "retry.max_attempts"),
        ("Object missing required field `x` - at `$.a[0]`", "retry", "retry.a[0].x"),
        ("Expected `object`, got `str`", "delivery", "delivery"),
    ],
)
def test_the_field_is_named(message: str, field: str, expected: str) -> None:
    assert _error_field(message, field) == expected
