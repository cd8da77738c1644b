"""Schedule validation (errors name the field), date ranges and audiences."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import asyncssh
import pytest

from stream_app.delivery.targets import (
    ApiTarget,
    EmailTarget,
    RetryPolicy,
    SftpTarget,
    WebhookTarget,
)
from stream_app.schedules.model import (
    Audience,
    RecipientFilter,
    Schedule,
    ScheduleValidationError,
    report_dates,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()


def schedule(**overrides: Any) -> Schedule:
    fields: dict[str, Any] = {
        "schedule_id": "s-1",
        "organization_id": "org-1",
        "created_by": "user-1",
        "report_type": "monthly_booking_summary",
        "date_range": "previous_month",
        "output_formats": ("csv",),
        "cron": "0 8 * * MON#1",
        "time_zone": "Europe/London",
        "delivery": ApiTarget(),
    }
    fields.update(overrides)
    return Schedule(**fields)


def field_of(**overrides: Any) -> str:
    with pytest.raises(ScheduleValidationError) as err:
        schedule(**overrides)
    return err.value.field


def test_valid_schedule_defaults() -> None:
    s = schedule()
    assert s.min_interval_seconds == 300
    assert s.retry == RetryPolicy(max_attempts=3, base_backoff_s=30.0, max_backoff_s=900.0)
    assert not s.paused


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "+05:30"}, "time_zone"),
        ({"schedule_id": "a/b"}, "schedule_id"),
        ({"schedule_id": "x" * 129}, "schedule_id"),
        ({"schedule_id": ".."}, "schedule_id"),
        ({"schedule_id": "."}, "schedule_id"),
        ({"schedule_id": "monthly\n"}, "schedule_id"),
        ({"report_type": "weekly_magic"}, "report_type"),
        ({"date_range": "last_n_days:0"}, "date_range"),
        ({"date_range": "previous_year"}, "date_range"),
        ({"output_formats": ()}, "output_formats"),
        ({"output_formats": ("csv", "csv")}, "output_formats"),
        ({"output_formats": ("docx",)}, "output_formats"),
        ({"expires_at": datetime(2030, 1, 1)}, "expires_at"),  # noqa: DTZ001 - naive on purpose
        ({"min_interval_seconds": -1}, "min_interval_seconds"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_invalid_fields_are_named(overrides: dict[str, Any], field: str) -> None:
    assert field_of(**overrides) == field


def test_bad_cron_message_names_the_cron_field() -> None:
    with pytest.raises(ScheduleValidationError) as err:
        schedule(cron="0 8 * * 8")
    assert err.value.field == "cron"
    assert "day-of-week" in err.value.reason and "'8'" in err.value.reason


@pytest.mark.parametrize(
    "at",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    ],
)
def test_an_expiration_outside_the_calendar_in_utc_is_named(at: datetime) -> None:
    """An attacker round: these were an OverflowError, a 500 on POST/PUT of a schedule."""
    with pytest.raises(ScheduleValidationError) as err:
        schedule(expires_at=at)
    assert (err.value.field, err.value.reason) == (
        "expires_at",
        "is outside the calendar in UTC (years 1 to 9999)",
    )


def test_expiration_in_the_past_is_rejected_at_check_time() -> None:
    s = schedule(expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(ScheduleValidationError) as err:
        s.check_at(NOW)
    assert err.value.field == "expires_at"
    schedule(expires_at=NOW + timedelta(days=1)).check_at(NOW)


def test_expiration_is_normalised_to_utc() -> None:
    s = schedule(expires_at=datetime(2026, 6, 1, 10, 0, tzinfo=timezone(timedelta(hours=2))))
    assert s.expires_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert s.expires_at is not None and s.expires_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: EmailTarget(recipients=()), "delivery.recipients"),
        (lambda: EmailTarget(recipients=("not-an-address",)), "delivery.recipients"),
        (lambda: EmailTarget(recipients=("a@x.org", "A@x.org")), "delivery.recipients"),
        (lambda: EmailTarget(recipients=("a@x.org",), subject="a\nBcc: x"), "delivery.subject"),
        (lambda: WebhookTarget(url="ftp://x.org/h", secret="s" * 16), "delivery.url"),
        (lambda: WebhookTarget(url="https:///nohost", secret="s" * 16), "delivery.url"),
        (lambda: WebhookTarget(url="https://x.org:99999/h", secret="s" * 16), "delivery.url"),
        (lambda: WebhookTarget(url="https://x.org/a b", secret="s" * 16), "delivery.url"),
        (lambda: WebhookTarget(url="https://x.org/h", secret="short"), "delivery.secret"),
        (
            lambda: WebhookTarget(url="https://x.org/h", secret="s" * 16, timeout_s=0),
            "delivery.timeout_s",
        ),
        (
            lambda: SftpTarget(host="h", username="u", path="/in", host_key=HOST_KEY),
            "delivery.password",
        ),
        (
            lambda: SftpTarget(host="h", username="u", path="/in", host_key="junk", password="p"),
            "delivery.host_key",
        ),
        (
            lambda: SftpTarget(
                host="h", username="u", path="/in", host_key=HOST_KEY, password="p", port=0
            ),
            "delivery.port",
        ),
        (lambda: ApiTarget(link_ttl_seconds=10), "delivery.link_ttl_seconds"),
        (lambda: RetryPolicy(max_attempts=0), "retry.max_attempts"),
        (lambda: RetryPolicy(base_backoff_s=0), "retry.base_backoff_s"),
        (lambda: RetryPolicy(base_backoff_s=10, max_backoff_s=5), "retry.max_backoff_s"),
        (
            lambda: RecipientFilter(recipient="a@x.org", field="colour", values=("x",)),
            "recipient_filters.field",
        ),
    ],
)
def test_invalid_targets_are_named(make: Any, field: str) -> None:
    with pytest.raises(ScheduleValidationError) as err:
        make()
    assert err.value.field == field


def test_secrets_are_not_in_repr() -> None:
    hook = WebhookTarget(url="https://x.org/h", secret="very-secret-value-123")
    sftp = SftpTarget(host="h", username="u", path="/in", host_key=HOST_KEY, password="hunter22")
    assert "very-secret-value-123" not in repr(hook)
    assert "hunter22" not in repr(sftp)


def test_recipient_filters_must_name_a_recipient_of_an_email_target() -> None:
    email = EmailTarget(recipients=("a@x.org", "b@x.org"))
    flt = RecipientFilter(recipient="c@x.org", field="venue_id", values=("v1",))
    assert field_of(delivery=email, recipient_filters=(flt,)) == "recipient_filters.recipient"
    ok = RecipientFilter(recipient="a@x.org", field="venue_id", values=("v1",))
    assert field_of(recipient_filters=(ok,)) == "recipient_filters"  # api target


def test_audiences_group_recipients_by_filters() -> None:
    email = EmailTarget(recipients=("a@x.org", "b@x.org", "c@x.org", "d@x.org"))
    s = schedule(
        delivery=email,
        recipient_filters=(
            RecipientFilter(recipient="b@x.org", field="venue_id", values=("v2", "v1")),
            RecipientFilter(recipient="d@x.org", field="venue_id", values=("v1", "v2")),
            RecipientFilter(recipient="c@x.org", field="venue_id", values=("v3",)),
        ),
    )
    assert s.audiences() == [
        Audience(recipients=("a@x.org",), filters=()),
        Audience(recipients=("b@x.org", "d@x.org"), filters=(("venue_id", ("v1", "v2")),)),
        Audience(recipients=("c@x.org",), filters=(("venue_id", ("v3",)),)),
    ]
    assert replace(s, recipient_filters=()).audiences() == [
        Audience(recipients=("a@x.org", "b@x.org", "c@x.org", "d@x.org"), filters=())
    ]
    assert schedule().audiences() == [Audience(recipients=(), filters=())]


@pytest.mark.parametrize(
    ("rule", "fire_date", "expected"),
    [
        ("previous_month", date(2026, 1, 5), (date(2025, 12, 1), date(2025, 12, 31))),
        ("previous_month", date(2024, 3, 1), (date(2024, 2, 1), date(2024, 2, 29))),
        ("previous_week", date(2026, 3, 2), (date(2026, 2, 23), date(2026, 3, 1))),  # Mon
        ("previous_week", date(2026, 3, 8), (date(2026, 2, 23), date(2026, 3, 1))),  # Sun
        ("previous_quarter", date(2027, 2, 10), (date(2026, 10, 1), date(2026, 12, 31))),
        ("previous_quarter", date(2026, 7, 1), (date(2026, 4, 1), date(2026, 6, 30))),
        ("previous_day", date(2024, 3, 1), (date(2024, 2, 29), date(2024, 2, 29))),
        ("last_n_days:7", date(2026, 3, 10), (date(2026, 3, 3), date(2026, 3, 9))),
        ("last_n_days:1", date(2026, 1, 1), (date(2025, 12, 31), date(2025, 12, 31))),
    ],
)
def test_report_dates(rule: str, fire_date: date, expected: tuple[date, date]) -> None:
    assert report_dates(rule, fire_date) == expected
