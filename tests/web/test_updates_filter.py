"""What a live-update stream may and asked to see: the ``metric`` filter (the event ids read
back are tested in ``test_updates_ids.py``)."""

from __future__ import annotations

import pytest

from stream_app.web.auth import Principal
from stream_app.web.errors import ApiError
from stream_app.web.updates_filter import parse_filter


def test_an_unknown_metric_filter_is_refused_naming_the_field() -> None:
    """A stream filtered on a metric no table publishes would stay empty for ever: 400."""
    principal = Principal(user_id="u", organization_id="org-a", role="viewer")
    with pytest.raises(ApiError) as caught:
        parse_filter(principal, "venue_bookings,nope", None)
    assert (caught.value.status, caught.value.field) == (400, "metric")
    ok = parse_filter(principal, "venue_bookings,report_status", None)
    assert ok.metrics == frozenset({"venue_bookings", "report_status"})


def test_a_bad_venue_filter_states_the_id_rule() -> None:
    """``venue=v x`` is refused with the rule every other id error states, not only 'invalid'."""
    principal = Principal(user_id="u", organization_id="org-a", role="viewer")
    with pytest.raises(ApiError) as caught:
        parse_filter(principal, None, "v1,v x")
    assert (caught.value.status, caught.value.field) == (400, "venue")
    assert caught.value.reason == (
        "venue: must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', ':' or '-', and not '.' "
        "or '..', got 'v x'"
    )
    assert parse_filter(principal, None, "v1,v2").venues == frozenset({"v1", "v2"})


def test_a_bad_metric_filter_is_not_echoed() -> None:
    """An attacker round sent a token as ``metric`` and had it answered back whole."""
    principal = Principal(user_id="u", organization_id="org-a", role="viewer")
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    with pytest.raises(ApiError) as caught:
        parse_filter(principal, token, None)
    assert (caught.value.status, caught.value.field) == (400, "metric")
    assert "eyJ" not in caught.value.reason and "c2ln" not in caught.value.reason
    assert caught.value.reason == (
        "metric: a value is not a metric name (a-z first, then 0-63 of a-z, 0-9, _)"
    )
