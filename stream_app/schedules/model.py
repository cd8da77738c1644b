"""A report schedule as a validated, immutable value.

A :class:`Schedule` says *what* to generate (report type, a date range relative to the fire
time, output formats), *when* (a 5-field cron expression read in an IANA time zone, see
:mod:`stream_app.schedules.cron`), *where to* (one delivery target: email, webhook, SFTP or
API) and *how hard to try* (retry policy); targets and policy are delivery's own
(:mod:`stream_app.delivery.targets`). Construction validates every field and raises
:class:`ScheduleValidationError` naming the field; checks that need the current time
(expiration in the past) are in :meth:`Schedule.check_at`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from stream_app import iana
from stream_app.delivery.targets import (
    DeliveryTarget,
    EmailTarget,
    RetryPolicy,
    TargetValidationError,
)
from stream_app.schedules.cron import CronExpressionError, validate_cron
from stream_app.schemas.ids import ID_RULE, is_valid_id
from stream_app.schemas.reports import OUTPUT_FORMATS, REPORT_TYPES

DEFAULT_MIN_INTERVAL_SECONDS = 300
"""Default minimum spacing of two runs of one schedule, seconds (between their fire times)."""

MAX_MIN_INTERVAL_SECONDS = 31 * 24 * 3600
FILTER_FIELDS = frozenset({"venue_id"})
"""Report dimensions a per-recipient filter may restrict."""

_LAST_N_RE = re.compile(r"^last_n_days:([0-9]{1,4})$")
MAX_LAST_N_DAYS = 3660

DateRangeRule = str
"""``previous_day``, ``previous_week`` (ISO week, Monday–Sunday), ``previous_month``,
``previous_quarter`` or ``last_n_days:N`` (the N whole days before the fire date)."""

Priority = Literal["low", "normal", "high", "critical"]


ScheduleValidationError = TargetValidationError
"""A schedule field is invalid (the error of every check, the delivery target's included):
``field`` names it (dotted for nested ones: ``delivery.url``), ``reason`` says what is wrong."""


def _check_id(name: str, value: str) -> None:
    """The product's one id rule (:mod:`stream_app.schemas.ids`)."""
    if not is_valid_id(value):
        raise ScheduleValidationError(name, f"{value!r} must be {ID_RULE}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientFilter:
    """Restrict what one email recipient receives to some values of a report dimension.

    Attributes:
        recipient: one of the email target's recipients.
        field: a dimension of :data:`FILTER_FIELDS` (``venue_id``).
        values: the allowed values, one or more.
    """

    recipient: str
    field: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.field not in FILTER_FIELDS:
            raise ScheduleValidationError(
                "recipient_filters.field",
                f"{self.field!r} is not one of {sorted(FILTER_FIELDS)}",
            )
        if not self.values or any(not v for v in self.values):
            raise ScheduleValidationError(
                "recipient_filters.values", f"{self.recipient}: at least one non-empty value"
            )


def parse_date_range(rule: str) -> tuple[str, int]:
    """Split a date range rule into ``(kind, n)``; ``n`` is 0 except for ``last_n_days``.

    Raises:
        ScheduleValidationError: on ``date_range`` when the rule is not one of
            :data:`DateRangeRule`.
    """
    if rule in ("previous_day", "previous_week", "previous_month", "previous_quarter"):
        return rule, 0
    match = _LAST_N_RE.match(rule)
    if match:
        n = int(match.group(1))
        if 1 <= n <= MAX_LAST_N_DAYS:
            return "last_n_days", n
    raise ScheduleValidationError(
        "date_range",
        f"{rule!r} is not previous_day, previous_week, previous_month, previous_quarter "
        f"or last_n_days:N (1 ≤ N ≤ {MAX_LAST_N_DAYS})",
    )


def report_dates(rule: str, fire_date: date) -> tuple[date, date]:
    """The inclusive local date range a run fired on ``fire_date`` (local date) reports on.

    ``previous_week`` is the ISO week (Monday–Sunday) before the one holding ``fire_date``;
    ``previous_month`` / ``previous_quarter`` are the calendar month / quarter before;
    ``last_n_days:N`` is the N days ending the day before ``fire_date``.

    Raises:
        ScheduleValidationError: the rule is unknown (see :func:`parse_date_range`).
    """
    kind, n = parse_date_range(rule)
    if kind == "previous_day":
        day = fire_date - timedelta(days=1)
        return day, day
    if kind == "previous_week":
        this_monday = fire_date - timedelta(days=fire_date.weekday())
        return this_monday - timedelta(days=7), this_monday - timedelta(days=1)
    if kind == "previous_month":
        last = fire_date.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    if kind == "previous_quarter":
        quarter_start_month = 3 * ((fire_date.month - 1) // 3) + 1
        last = fire_date.replace(month=quarter_start_month, day=1) - timedelta(days=1)
        first_month = last.month - 2
        return date(last.year, first_month, 1), last
    end = fire_date - timedelta(days=1)
    return end - timedelta(days=n - 1), end


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A report schedule (see the module docstring).

    Attributes:
        schedule_id: an id (:mod:`stream_app.schemas.ids`); unique within the organisation.
        organization_id: the tenant.
        created_by: the user who owns the schedule (becomes the report request's user_id).
        report_type: one of :data:`stream_app.schemas.reports.REPORT_TYPES`.
        date_range: a :data:`DateRangeRule`, computed from the fire time's local date.
        output_formats: one or more of :data:`stream_app.schemas.reports.OUTPUT_FORMATS`.
        cron: 5-field cron expression (minute hour day-of-month month day-of-week), read in
            ``time_zone`` (see :mod:`stream_app.schedules.cron` for the DST policy).
        time_zone: IANA zone name.
        delivery: where the report goes.
        retry: delivery retry policy.
        expires_at: no fire time at or after this instant runs (UTC; ``None`` = never).
        paused: a paused schedule does not fire; resuming does not catch up the pause.
        skip_if_empty: do not deliver a report whose files have no data rows.
        min_interval_seconds: a fire time less than this many seconds after the previous
            run's fire time is skipped (0 – 31 days).
        recipient_filters: per-recipient restrictions (email only).
        priority: the report requests' priority lane.
    """

    schedule_id: str
    organization_id: str
    created_by: str
    report_type: str
    date_range: DateRangeRule
    output_formats: tuple[str, ...]
    cron: str
    time_zone: str
    delivery: DeliveryTarget
    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 - a frozen value
    expires_at: datetime | None = None
    paused: bool = False
    skip_if_empty: bool = False
    min_interval_seconds: int = DEFAULT_MIN_INTERVAL_SECONDS
    recipient_filters: tuple[RecipientFilter, ...] = ()
    priority: Priority = "normal"

    def __post_init__(self) -> None:
        _check_id("schedule_id", self.schedule_id)
        _check_id("organization_id", self.organization_id)
        _check_id("created_by", self.created_by)
        if self.report_type not in REPORT_TYPES:
            raise ScheduleValidationError(
                "report_type", f"{self.report_type!r} is not one of {sorted(REPORT_TYPES)}"
            )
        parse_date_range(self.date_range)
        if not self.output_formats:
            raise ScheduleValidationError("output_formats", "at least one format is required")
        unknown = [f for f in self.output_formats if f not in OUTPUT_FORMATS]
        if unknown:
            raise ScheduleValidationError(
                "output_formats", f"{unknown} not supported (choose from {sorted(OUTPUT_FORMATS)})"
            )
        if len(set(self.output_formats)) != len(self.output_formats):
            raise ScheduleValidationError("output_formats", "a format is listed twice")
        try:
            iana.zone(self.time_zone)
        except ValueError as exc:
            raise ScheduleValidationError("time_zone", str(exc)) from None
        try:
            validate_cron(self.cron, self.time_zone)
        except CronExpressionError as exc:
            raise ScheduleValidationError("cron", str(exc)) from exc
        if self.expires_at is not None:
            if self.expires_at.tzinfo is None or self.expires_at.utcoffset() is None:
                raise ScheduleValidationError("expires_at", "must carry a UTC offset")
            try:
                object.__setattr__(self, "expires_at", self.expires_at.astimezone(UTC))
            except OverflowError:  # 0001-01-01T00:00+14:00 or 9999-12-31T23:59-14:00 (a 500)
                raise ScheduleValidationError(
                    "expires_at", "is outside the calendar in UTC (years 1 to 9999)"
                ) from None
        if not 0 <= self.min_interval_seconds <= MAX_MIN_INTERVAL_SECONDS:
            raise ScheduleValidationError(
                "min_interval_seconds", f"must be between 0 and {MAX_MIN_INTERVAL_SECONDS}"
            )
        if self.priority not in ("low", "normal", "high", "critical"):
            raise ScheduleValidationError("priority", f"{self.priority!r} is not a priority")
        if self.recipient_filters:
            if not isinstance(self.delivery, EmailTarget):
                raise ScheduleValidationError(
                    "recipient_filters", "only email deliveries have recipients to filter for"
                )
            known = set(self.delivery.recipients)
            seen: set[tuple[str, str]] = set()
            for flt in self.recipient_filters:
                if flt.recipient not in known:
                    raise ScheduleValidationError(
                        "recipient_filters.recipient",
                        f"{flt.recipient!r} is not one of the email recipients",
                    )
                if (flt.recipient, flt.field) in seen:
                    raise ScheduleValidationError(
                        "recipient_filters", f"{flt.recipient}: {flt.field} is filtered twice"
                    )
                seen.add((flt.recipient, flt.field))

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's zone."""
        return ZoneInfo(self.time_zone)

    def check_at(self, now: datetime) -> None:
        """Checks that depend on the current time ``now`` (UTC-aware).

        Raises:
            ScheduleValidationError: on ``expires_at`` when it is not after ``now``.
        """
        if self.expires_at is not None and self.expires_at <= now:
            raise ScheduleValidationError(
                "expires_at", f"{self.expires_at.isoformat()} is in the past"
            )

    def audiences(self) -> list[Audience]:
        """Who receives which variant of a run's report.

        Email recipients with the same filters share one report; recipients without filters
        share the unfiltered one. Other delivery methods have a single audience. The order is
        stable: the unfiltered audience first, then by first recipient.
        """
        if not isinstance(self.delivery, EmailTarget):
            return [Audience(recipients=(), filters=())]
        by_recipient: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for flt in self.recipient_filters:
            by_recipient.setdefault(flt.recipient, []).append(
                (flt.field, tuple(sorted(set(flt.values))))
            )
        groups: dict[tuple[tuple[str, tuple[str, ...]], ...], list[str]] = {}
        for address in self.delivery.recipients:
            key = tuple(sorted(by_recipient.get(address, [])))
            groups.setdefault(key, []).append(address)
        ordered = sorted(groups.items(), key=lambda kv: (kv[0] != (), kv[1][0]))
        return [Audience(recipients=tuple(r), filters=f) for f, r in ordered]


@dataclass(frozen=True, slots=True)
class Audience:
    """Recipients that receive one variant of a report.

    Attributes:
        recipients: email addresses (empty for non-email methods).
        filters: ``((field, values), ...)`` restrictions of the report; empty = unfiltered.
    """

    recipients: tuple[str, ...]
    filters: tuple[tuple[str, tuple[str, ...]], ...]
