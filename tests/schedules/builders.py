"""Schedules for the schedule and delivery tests: the fields no test is about written once, each
test overriding what it checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_app.delivery.targets import ApiTarget
from stream_app.schedules.model import Schedule

DEFAULTS: dict[str, Any] = {
    "created_by": "user-1",
    "report_type": "monthly_booking_summary",
    "date_range": "previous_month",
    "output_formats": ("csv",),
    "cron": "0 * * * *",
    "time_zone": "UTC",
    "delivery": ApiTarget(),
    "min_interval_seconds": 0,
}
"""Fields of every test schedule unless overridden: an hourly monthly booking summary, fetched
through the API, with no minimum interval between fire times."""


def schedule(org: str, schedule_id: str, **overrides: Any) -> Schedule:
    """Schedule ``schedule_id`` of ``org``: :data:`DEFAULTS` with ``overrides`` (fields of
    :class:`Schedule`) on top."""
    return Schedule(**{**DEFAULTS, "schedule_id": schedule_id, "organization_id": org, **overrides})


def per_org(name: str, **overrides: Any) -> Callable[[str], Schedule]:
    """A builder of schedule ``<name>-<org>`` for any organisation (what ``make_run`` of
    tests/delivery/conftest.py takes)."""
    return lambda org: schedule(org, f"{name}-{org}", **overrides)
