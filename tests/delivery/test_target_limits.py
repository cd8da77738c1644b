"""Limits of a delivery target's fields, shared by schedules and report requests (attacker
report s4, items 4 and 7), and the URL masking of :mod:`stream_app.delivery.redact`."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from stream_app.delivery.redact import clip, mask_url, mask_urls, strip_urls
from stream_app.delivery.targets import (
    MAX_RECIPIENTS,
    EmailTarget,
    TargetValidationError,
    WebhookTarget,
    target_from_dict,
)
from stream_app.schedules.model import Schedule
from tests.schedules.builders import schedule

SECRET = "whsec-0123456789-abcdefghij"


def failing_field(value: dict[str, Any]) -> str:
    """The field :func:`target_from_dict` names when it refuses ``value`` (msgspec wraps a
    target's own check as ``"<field>: <reason>"``)."""
    try:
        target_from_dict(value)
    except TargetValidationError as exc:
        return exc.field
    except msgspec.ValidationError as exc:
        return str(exc).split(": ", 1)[0]
    raise AssertionError(f"{value!r} was accepted")


def recipients(n: int) -> tuple[str, ...]:
    return tuple(f"r{i}@wedding.example" for i in range(n))


def test_recipient_cap_applies_to_schedules_and_requests() -> None:
    assert MAX_RECIPIENTS == 50
    assert len(EmailTarget(recipients=recipients(50)).recipients) == 50
    with pytest.raises(TargetValidationError) as err:
        EmailTarget(recipients=recipients(51))
    assert err.value.field == "delivery.recipients" and "at most 50" in err.value.reason
    with pytest.raises(TargetValidationError) as err:
        schedule("org-a", "s-many", delivery=EmailTarget(recipients=recipients(51)))
    assert err.value.field == "delivery.recipients"
    ok: Schedule = schedule("org-a", "s-ok", delivery=EmailTarget(recipients=recipients(2)))
    assert ok.delivery.method == "email"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url": "http://example.com:0/"}, "delivery.url"),
        ({"url": "http://example.com/" + "a" * 2030}, "delivery.url"),
        ({"secret": "s" * 1025}, "delivery.secret"),
        ({"secret": "0123456789abcdef\x00"}, "delivery.secret"),
        ({"extra": 1}, "delivery.extra"),
        # hosts the IDNA codec refuses were accepted, then failed at every send
        ({"url": "http://a..b:7861/h"}, "delivery.url"),
        ({"url": "http://xn--:7861/h"}, "delivery.url"),
        ({"url": "http://" + "a" * 64 + ".example/h"}, "delivery.url"),
    ],
)
def test_webhook_field_limits(fields: dict[str, Any], field: str) -> None:
    value = {"method": "webhook", "url": "http://example.com/h", "secret": SECRET, **fields}
    assert failing_field(value) == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subject": "s" * 201}, "delivery.subject"),
        ({"subject": "a\u2028b"}, "delivery.subject"),
        ({"subject": "a\u2029b"}, "delivery.subject"),
        ({"subject": "a\u0085b"}, "delivery.subject"),
        ({"subject": "a\x00b"}, "delivery.subject"),
        ({"subject": "a\x1bb"}, "delivery.subject"),
        # an attacker round: an encoded word decoded into CRLF + headers (CVE-2024-6923)
        ({"subject": "=?utf-8?b?eA0KQmNjOiBoaWRkZW5AZXZpbC5leGFtcGxl?="}, "delivery.subject"),
        ({"subject": "Report =?utf-8?q?a=0D=0AX-Injected=3A_yes?= now"}, "delivery.subject"),
        (
            {"recipients": ["=?utf-8?q?a=0D=0AX-Injected=3A_yes?=@example.com"]},
            "delivery.recipients",
        ),
        # a second round: a space inside the encoded word hid it from the pattern; Python
        # still decoded it (accepted with 201, then refused at every send)
        ({"subject": "=?utf-8?q?x y=0D=0ABcc:_e@x?="}, "delivery.subject"),
        ({"subject": "=?utf-8?q?=0D=0A ?="}, "delivery.subject"),
        ({"subject": "=?utf-8?b?YQ0K QmNjOiBlQHg=?="}, "delivery.subject"),
        ({"recipients": ["a@example.com."]}, "delivery.recipients"),  # the server's 553
        ({"recipients": ["a@example..com"]}, "delivery.recipients"),
        ({"recipients": ["a@[127.0.0.1]"]}, "delivery.recipients"),
        ({"recipients": ["root@localhost"]}, "delivery.recipients"),
        ({"recipients": ["a\u2028@wedding.example"]}, "delivery.recipients"),
        ({"recipients": ["a" * 245 + "@x.example"]}, "delivery.recipients"),
        ({"method": {}}, "delivery.method"),
    ],
)
def test_email_field_limits(fields: dict[str, Any], field: str) -> None:
    value = {"method": "email", "recipients": ["ops@wedding.example"], **fields}
    assert failing_field(value) == field


def test_fields_at_their_limits_are_accepted() -> None:
    target = target_from_dict(
        {
            "method": "email",
            "recipients": ["a" * 244 + "@x.example"],  # 254 characters
            "subject": "s" * 200,
        }
    )
    assert isinstance(target, EmailTarget) and len(target.recipients[0]) == 254
    # "=?" that is no encoded word, and any Unicode, stay plain text
    plain = target_from_dict(
        {"method": "email", "recipients": ["a@x.example"], "subject": "Q=?1 — réservations été"}
    )
    assert isinstance(plain, EmailTarget) and plain.subject == "Q=?1 — réservations été"
    hook = WebhookTarget(url="http://example.com/" + "a" * 2029, secret="k" * 1024)
    assert len(hook.url) == 2048


def test_a_bad_url_is_named_masked() -> None:
    with pytest.raises(TargetValidationError) as err:
        WebhookTarget(url="ftp://user:pw@example.com/x?key=K", secret=SECRET)
    assert "pw" not in err.value.reason and "key=K" not in err.value.reason
    assert "ftp://***@example.com/x?***" in err.value.reason


def test_masking() -> None:
    assert (
        mask_url("http://hookuser:hookpass@example.com/hook?api_key=TOPSECRETKEY")
        == "http://***@example.com/hook?***"
    )
    assert mask_url("https://example.com:8443/h") == "https://example.com:8443/h"
    assert mask_urls("POST http://u:p@h/x?a=1: HTTP 503 'http://q/r?s'") == (
        "POST http://***@h/x?***: HTTP 503 'http://q/r?***'"
    )
    assert strip_urls("POST http://h/x: HTTP 503") == "POST <target>: HTTP 503"
    assert clip("x" * 600) == "x" * 499 + "…" and clip("short") == "short"
