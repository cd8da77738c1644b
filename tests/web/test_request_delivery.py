"""A report request's own ``delivery`` and a schedule's ``delivery``/``retry`` checked at
request time (found by the s6 black-box attacker): numbers and booleans must be JSON numbers
and booleans (``"5"``, ``"true"`` were converted), the first retry wait is at least 1 s, and
each refusal is a 400 naming the exact field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from stream_app.delivery.adhoc import parse_delivery
from stream_app.delivery.targets import MIN_BASE_BACKOFF_S, RetryPolicy, TargetValidationError
from stream_app.web.auth import Principal
from stream_app.web.delivery_targets import request_delivery_from_json
from stream_app.web.errors import ApiError
from stream_app.web.schedules import schedule_from_json
from tests.web.test_schedules import SCHEDULE_BODY

SECRET = "request-secret-0123456789"
HOOK: dict[str, Any] = {"method": "webhook", "url": "https://hooks.example.com/h", "secret": SECRET}
SFTP_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEUo+7A0MCbQnAQ8KMRY5bTv3EWO+HqHHVcMpCKozKIf"
SFTP: dict[str, Any] = {
    "method": "sftp",
    "host": "files.example.com",
    "username": "u",
    "path": "/in",
    "host_key": SFTP_KEY,
    "password": "pw",
}


def refusal(delivery: dict[str, Any]) -> tuple[int, str | None, str]:
    """``(status, field, reason)`` of the 400 a report request's ``delivery`` gets."""
    with pytest.raises(ApiError) as caught:
        request_delivery_from_json(delivery)
    return caught.value.status, caught.value.field, caught.value.reason


@pytest.mark.parametrize(
    ("delivery", "field", "expected"),
    [
        ({**HOOK, "retry": {"base_backoff_s": "5"}}, "$.delivery.retry.base_backoff_s", "float"),
        ({**HOOK, "retry": {"max_attempts": "3"}}, "$.delivery.retry.max_attempts", "int"),
        ({**HOOK, "retry": {"max_attempts": True}}, "$.delivery.retry.max_attempts", "int"),
        ({**HOOK, "timeout_s": "5"}, "$.delivery.timeout_s", "float"),
        ({**HOOK, "link_ttl_seconds": "3600"}, "$.delivery.link_ttl_seconds", "int"),
        ({**SFTP, "port": "22"}, "$.delivery.port", "int"),
    ],
)
def test_a_number_given_as_a_string_is_refused(
    delivery: dict[str, Any], field: str, expected: str
) -> None:
    status, named, reason = refusal(delivery)
    assert (status, named) == (400, field)
    assert f"Expected `{expected}`" in reason and "got `" in reason


def test_a_first_wait_under_one_second_is_refused() -> None:
    assert MIN_BASE_BACKOFF_S == 1.0
    status, field, reason = refusal({**HOOK, "retry": {"base_backoff_s": 0.5}})
    assert (status, field) == (400, "$.delivery.retry.base_backoff_s")
    assert reason.startswith("must be at least 1 second (got 0.5)")
    ok = request_delivery_from_json({**HOOK, "retry": {"base_backoff_s": 1, "max_backoff_s": 2}})
    assert ok.retry == RetryPolicy(max_attempts=3, base_backoff_s=1.0, max_backoff_s=2.0)


def test_a_kafka_request_s_delivery_is_read_as_strictly() -> None:
    """A request produced to Kafka directly is read by :func:`parse_delivery` (its delivery
    is then skipped with the reason): the same types and the same floor."""
    with pytest.raises(msgspec.ValidationError, match=r"Expected `float`, got `str`"):
        parse_delivery({**HOOK, "retry": {"base_backoff_s": "5"}})
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str`"):
        parse_delivery({**SFTP, "port": "22"})
    with pytest.raises(TargetValidationError) as caught:
        parse_delivery({**HOOK, "retry": {"base_backoff_s": 0.2}})
    assert caught.value.field == "retry.base_backoff_s"
    assert parse_delivery({**HOOK, "retry": {"base_backoff_s": 2}}).retry.base_backoff_s == 2.0


def schedule_refusal(**fields: Any) -> tuple[int, str | None, str]:
    """``(status, field, reason)`` of the 400 ``POST /schedules`` gets for ``fields``."""
    principal = Principal(user_id="u", organization_id="o", role="admin")
    with pytest.raises(ApiError) as caught:
        schedule_from_json(
            {**SCHEDULE_BODY, **fields},
            organization_id="o",
            principal=principal,
            default_zone="UTC",
        )
    return caught.value.status, caught.value.field, caught.value.reason


@pytest.mark.parametrize(
    ("fields", "expected_field", "expected"),
    [
        ({"retry": {"base_backoff_s": "5"}}, "$.retry.base_backoff_s", "Expected `float`"),
        ({"retry": {"base_backoff_s": 0.1}}, "$.retry.base_backoff_s", "must be at least 1 second"),
        ({"paused": "false"}, "$.paused", "Expected `bool`, got `str`"),
        ({"skip_if_empty": "true"}, "$.skip_if_empty", "Expected `bool`, got `str`"),
        ({"min_interval_seconds": "60"}, "$.min_interval_seconds", "Expected `int`, got `str`"),
        ({"output_formats": "csv"}, "$.output_formats", "Expected `array`, got `str`"),
        ({"delivery": {**HOOK, "timeout_s": "5"}}, "$.delivery.timeout_s", "Expected `float`"),
    ],
)
def test_a_schedule_s_numbers_and_booleans_must_be_json_ones(
    fields: dict[str, Any], expected_field: str, expected: str
) -> None:
    """``"paused": "false"`` became ``bool("false")``: a paused schedule."""
    status, field, reason = schedule_refusal(**fields)
    assert (status, field) == (400, expected_field)
    assert reason.startswith(expected), reason
    assert " - at " not in reason, reason  # msgspec's path is relative to the inner value


def test_a_wrong_type_inside_a_nested_field_is_named_once_by_its_whole_path() -> None:
    """A fresh user's finding: ``{"retry": {"base_backoff_s": "5"}}`` answered ``field``
    ``$.retry.base_backoff_s`` with the reason ``... - at `$.base_backoff_s```: two paths,
    one of them wrong."""
    status, field, reason = schedule_refusal(retry={"base_backoff_s": "5"})
    assert (status, field, reason) == (
        400,
        "$.retry.base_backoff_s",
        "Expected `float`, got `str`",
    )


@pytest.mark.parametrize(
    ("delivery", "field", "expected"),
    [
        (
            {**HOOK, "url": "http://evil.com\\@127.0.0.1/"},
            "$.delivery.url",
            "'http://***@127.0.0.1/' is not a URL an HTTP client can send to (Invalid URL:"
            " backslash ('\\') is not allowed in the authority component per RFC 3986.)",
        ),
        (
            {**HOOK, "url": "https://user:pa\\ss@hooks.example.com/h"},
            "$.delivery.url",  # the password is not echoed
            "'https://***@hooks.example.com/h' is not a URL an HTTP client can send to (Invalid",
        ),
        (
            {**SFTP, "host": "files.example.com/in"},
            "$.delivery.host",
            "'files.example.com/in' is not a host name nor an IP address"
            " (Host 'files.example.com/in' cannot contain '/' (at position 17))",
        ),
        (
            {**SFTP, "host": "evil.example@files.example.com"},
            "$.delivery.host",
            "'evil.example@files.example.com' is not a host name nor an IP address"
            " (Host 'evil.example@files.example.com' cannot contain '@' (at position 12))",
        ),
        (
            {**SFTP, "host": "files.example.com?x"},
            "$.delivery.host",
            "'files.example.com?x' is not a host name nor an IP address",
        ),
    ],
)
def test_a_host_no_client_can_connect_to_is_refused_at_request_time(
    delivery: dict[str, Any], field: str, expected: str
) -> None:
    """Found by the s6 attacker: these were accepted and failed only when sent (or never
    sent: an SFTP host with ``/``). A schedule's delivery (the stored target) is refused by
    the same check, naming the same field."""
    status, named, reason = refusal(delivery)
    assert (status, named) == (400, field)
    assert reason.startswith(f"{field.removeprefix('$.')}: {expected}"), reason
    assert "pa\\ss" not in reason
    status, named, reason = schedule_refusal(delivery=delivery)
    assert (status, named) == (400, field)
    assert reason.startswith(f"{field.removeprefix('$.')}: {expected}"), reason


def test_plain_hosts_are_still_accepted() -> None:
    for host, raw in (("files.example.com", "files.example.com"), ("bücher.example", None)):
        got = request_delivery_from_json({**SFTP, "host": host}).target
        assert getattr(got, "host", None) == host, raw
    hook = request_delivery_from_json({**HOOK, "url": "https://u:p@hooks.example.com:8443/h?a=1"})
    assert getattr(hook.target, "url", None) == "https://u:p@hooks.example.com:8443/h?a=1"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cron": "0 8 1 * * *"}, "$.cron"),
        ({"report_type": "nope"}, "$.report_type"),
        ({"date_range": "someday"}, "$.date_range"),
        ({"output_formats": ["doc"]}, "$.output_formats"),
        ({"time_zone": "Mars/Base"}, "$.time_zone"),
        ({"priority": "urgent"}, "$.priority"),
        ({"min_interval_seconds": -1}, "$.min_interval_seconds"),
        ({"expires_at": "2030-01-01T00:00:00"}, "$.expires_at"),
        ({"schedule_id": "a/b"}, "$.schedule_id"),
        ({"surprise": 1}, "$.surprise"),
        ({"cron": ...}, "$.cron"),
        ({"retry": {"max_attempts": 0}}, "$.retry.max_attempts"),
        ({"delivery": {"method": "api", "extra": 1}}, "$.delivery.extra"),
        ({"delivery": {"method": "email"}}, "$.delivery.recipients"),
        (
            {
                "delivery": {"method": "email", "recipients": ["a@x.example"]},
                "recipient_filters": [
                    {"recipient": "a@x.example", "field": "colour", "values": []}
                ],
            },
            "$.recipient_filters.field",
        ),
    ],
)
def test_schedule_errors_name_the_field_from_the_body_s_root(
    fields: dict[str, Any], expected: str
) -> None:
    """s6 fresh user: schedule errors said ``cron`` where report requests say ``$.date_to``."""
    body = {k: v for k, v in {**SCHEDULE_BODY, **fields}.items() if v is not ...}
    principal = Principal(user_id="u", organization_id="o", role="admin")
    with pytest.raises(ApiError) as caught:
        schedule_from_json(body, organization_id="o", principal=principal, default_zone="UTC")
    assert (caught.value.status, caught.value.field) == (400, expected), caught.value.reason


def test_a_long_unknown_key_is_cut_with_its_length_in_the_field() -> None:
    """An unknown key of 3,000 characters was named by its first 80 with no sign of the cut
    (``retry.qqq…q`` named a key nobody sent); it is cut like every long value: an ellipsis
    and the length (s6 attacker, F6)."""
    long_key = "q" * 3000
    cut_key = "q" * 80 + "… (3000 characters)"
    assert refusal({**HOOK, "retry": {long_key: 1}})[1] == f"$.delivery.retry.{cut_key}"
    assert refusal({**HOOK, long_key: 1})[1] == f"$.delivery.{cut_key}"
    _, field, reason = refusal({**HOOK, "method": "m" * 3000})
    assert field == "$.delivery.method"
    assert reason == "$.delivery.method must be one of ['api', 'email', 'sftp', 'webhook']"
