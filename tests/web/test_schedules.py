"""A bad delivery or retry field is named in the 400's ``field`` the way the README shows it
(``delivery.recipients``), not just ``delivery`` (found by a fresh user and the attack tests)."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.web.auth import Principal
from stream_app.web.delivery_targets import error_field
from stream_app.web.errors import ApiError
from stream_app.web.schedules import schedule_from_json


@pytest.mark.parametrize(
    ("message", "field", "expected"),
    [
        ("Object missing required field `recipients`", "delivery", "delivery.recipients"),
        ("Expected `float`, got `str` - at `$.timeout_s`", "delivery", "delivery.timeout_s"),
        ("delivery.secret: must be at least 16 characters", "delivery", "delivery.secret"),
        ("Expected `int`, got `str` - at `$.max_attempts`", "retry", "retry.max_attempts"),
        ("Object missing required field `x` - at `$.a[0]`", "retry", "retry.a[0].x"),
        ("Expected `object`, got `str`", "delivery", "delivery"),
        (
            "retry.max_attempts: must be between 1 and 10",
            "$.delivery.retry",
            "$.delivery.retry.max_attempts",
        ),
    ],
)
def test_the_field_is_named(message: str, field: str, expected: str) -> None:
    assert error_field(message, field) == expected


SCHEDULE_BODY: dict[str, Any] = {
    "report_type": "monthly_booking_summary",
    "date_range": "previous_month",
    "output_formats": ["csv"],
    "cron": "0 8 1 * *",
    "delivery": {"method": "api"},
}
"""A valid schedule of ``POST /orgs/{org}/schedules``: the monthly summary, kept in the API."""


@pytest.mark.parametrize("method", [{}, [], None, 3, "fax"])
def test_a_delivery_method_that_is_no_method_name_is_a_400(method: object) -> None:
    """Found by Schemathesis (tests/web/test_openapi.py): ``{"method": {}}`` was a 500."""
    body = {**SCHEDULE_BODY, "delivery": {"method": method}}
    principal = Principal(user_id="u", organization_id="o", role="admin")
    with pytest.raises(ApiError) as caught:
        schedule_from_json(body, organization_id="o", principal=principal, default_zone="UTC")
    assert (caught.value.status, caught.value.field) == (400, "$.delivery.method")


def test_a_body_id_other_than_the_paths_is_a_400_naming_it() -> None:
    """``PUT …/schedules/amonthly`` with ``"schedule_id": "monthly"`` answered 200 and ignored
    the body's id (a security review's finding)."""
    principal = Principal(user_id="u", organization_id="o", role="admin")

    def replace(body: dict[str, Any]) -> str:
        return schedule_from_json(
            body,
            organization_id="o",
            principal=principal,
            default_zone="UTC",
            schedule_id="amonthly",
        ).schedule_id

    with pytest.raises(ApiError) as caught:
        replace({**SCHEDULE_BODY, "schedule_id": "monthly"})
    e = caught.value
    assert (e.status, e.code, e.field) == (400, "invalid_field", "$.schedule_id")
    assert e.reason == (
        "'monthly' differs from the path's schedule_id 'amonthly' (a schedule keeps its id:"
        " leave it out of the body, or send the same)"
    )
    assert replace({**SCHEDULE_BODY, "schedule_id": "amonthly"}) == "amonthly"
    assert replace(SCHEDULE_BODY) == "amonthly"


def test_fire_times_are_listed_within_bounds_and_say_whether_complete() -> None:
    """An attacker round's previews of rare expressions held the event loop for seconds and
    listed fire times to the year 9988; one answer is bounded and says when it is partial."""
    import time as clock
    from datetime import UTC, datetime, timedelta

    from stream_app.web import schedules

    start = datetime(2026, 1, 1, tzinfo=UTC)
    minutes = (start + timedelta(minutes=i) for i in range(10**9))
    times, complete = schedules.spaced(minutes, 3600, 5)
    assert [t - start for t in times] == [timedelta(hours=h) for h in range(5)] and complete
    # spaced by 31 days, 1,000 asked: the scan limit ends it, and it says so
    times, complete = schedules.spaced(
        (start + timedelta(minutes=i) for i in range(10**9)), 31 * 86400, 1000
    )
    assert len(times) == 1 + (schedules.SPACED_SCAN_LIMIT - 1) // (31 * 1440) and not complete

    # a slow source: the time budget ends it
    def slow() -> Any:
        for i in range(10**6):
            clock.sleep(0.01)
            yield start + timedelta(days=i)

    began = clock.monotonic()
    times, complete = schedules.spaced(slow(), 0, 1000, budget_s=0.05)
    assert clock.monotonic() - began < 0.5 and not complete and 1 <= len(times) <= 6
    # nothing from 2100 on: a report covers dates up to 2099
    late = (datetime(2099, 12, 31, tzinfo=UTC) + timedelta(days=i) for i in range(10))
    times, complete = schedules.spaced(late, 0, 1000)
    assert times == [datetime(2099, 12, 31, tzinfo=UTC)] and complete


def test_upcoming_fire_times_stay_within_their_budget() -> None:
    """A list of an organisation's schedules shares one budget: past it, a schedule lists no
    upcoming time (an attacker round's list of 30 costly schedules took 3.3 s)."""
    from datetime import UTC, datetime

    from stream_app.web import schedules
    from tests.schedules.builders import per_org

    hourly = per_org("hourly", cron="0 * * * *", time_zone="UTC", min_interval_seconds=0)("o")
    now = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    listed = schedules._upcoming(hourly, now)
    assert [t.hour for t in listed] == [1, 2, 3, 4, 5]
    assert schedules._upcoming(hourly, now, budget_s=0.0) == []  # the list's budget spent
    assert schedules._upcoming(hourly, now, budget_s=1.0) == listed  # capped at 5 ms, enough


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", 5])
def test_an_empty_or_bad_time_zone_is_a_400_naming_it(zone: object) -> None:
    """An attacker round: ``"time_zone": ""`` was taken for the organisation's zone (201),
    while the preview refused the same value; left out (or null) it still is the
    organisation's."""
    principal = Principal(user_id="u", organization_id="o", role="admin")
    with pytest.raises(ApiError) as caught:
        schedule_from_json(
            {**SCHEDULE_BODY, "time_zone": zone},
            organization_id="o",
            principal=principal,
            default_zone="Europe/Lisbon",
        )
    assert (caught.value.status, caught.value.field) == (400, "$.time_zone")
    for body in (SCHEDULE_BODY, {**SCHEDULE_BODY, "time_zone": None}):
        made = schedule_from_json(
            body, organization_id="o", principal=principal, default_zone="Europe/Lisbon"
        )
        assert made.time_zone == "Europe/Lisbon"
