"""Event ids of the live-update stream read back (``Last-Event-ID``): only ASCII digits,
offsets within Kafka's signed 64-bit range, a bounded length; anything else is a 400 naming
the field (found by the attack test: full-width digits and offsets beyond int64 passed)."""

from __future__ import annotations

import pytest

from stream_app.web.auth import Principal
from stream_app.web.errors import ApiError
from stream_app.web.updates_filter import parse_filter
from stream_app.web.updates_hub import MAX_OFFSET, decode_position, encode_position


def test_an_encoded_position_reads_back() -> None:
    position = {0: 17, 3: 4, 1: MAX_OFFSET}
    assert decode_position(encode_position(position)) == position


@pytest.mark.parametrize(
    "text",
    ["０:1", "0:１", "+0:1", "0: 1", "0:1_0", f"0:{MAX_OFFSET + 1}", "0:-5", "0:1,0:2", "x" * 5000],
)
def test_a_forged_position_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_position(text, "last_event_id")
    assert (caught.value.status, caught.value.field) == (400, "last_event_id")


def test_an_unknown_metric_filter_is_refused_naming_the_field() -> None:
    """A stream filtered on a metric no table publishes would stay empty for ever: 400."""
    principal = Principal(user_id="u", organization_id="org-a", role="viewer")
    with pytest.raises(ApiError) as caught:
        parse_filter(principal, "venue_bookings,nope", None)
    assert (caught.value.status, caught.value.field) == (400, "metric")
    ok = parse_filter(principal, "venue_bookings,report_status", None)
    assert ok.metrics == frozenset({"venue_bookings", "report_status"})
