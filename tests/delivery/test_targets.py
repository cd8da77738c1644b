"""Delivery targets and the retry policy (:mod:`stream_app.delivery.targets`): each bound
refused naming its field, and the storage form (secrets apart) and the flat JSON form read
back to the same target. (The HTTP layer's 400s for the same fields: ``tests/e2e``.)"""

from __future__ import annotations

from typing import Any

import asyncssh
import pytest

from stream_app.delivery.targets import (
    DEFAULT_LINK_TTL_SECONDS,
    ApiTarget,
    EmailTarget,
    RetryPolicy,
    SftpTarget,
    TargetValidationError,
    WebhookTarget,
    link_ttl_seconds,
    target_from_dict,
    target_from_parts,
    target_parts,
    target_to_dict,
)

SECRET = "s3cret-of-16-chars"
KEY = asyncssh.generate_private_key("ssh-ed25519")
HOST_KEY = KEY.export_public_key().decode().strip()


def field_of(make: Any, **kwargs: Any) -> str:
    with pytest.raises(TargetValidationError) as caught:
        make(**kwargs)
    return str(caught.value.field)


def test_link_lifetime_is_one_minute_to_thirty_days() -> None:
    assert DEFAULT_LINK_TTL_SECONDS == 604_800  # 7 days
    assert ApiTarget(link_ttl_seconds=60).link_ttl_seconds == 60
    assert ApiTarget(link_ttl_seconds=2_592_000).link_ttl_seconds == 2_592_000  # 30 days
    for bad in (59, 2_592_001, True):
        assert field_of(ApiTarget, link_ttl_seconds=bad) == "delivery.link_ttl_seconds"


def test_email_recipients_required_valid_and_unique_whatever_the_case() -> None:
    ok = EmailTarget(recipients=("ana@example.org", "rui@example.pt"))
    assert ok.recipients == ("ana@example.org", "rui@example.pt") and ok.subject is None
    assert field_of(EmailTarget, recipients=()) == "delivery.recipients"
    assert field_of(EmailTarget, recipients=("not-an-address",)) == "delivery.recipients"
    assert field_of(EmailTarget, recipients=("a@b.org", "A@B.org")) == "delivery.recipients"
    assert field_of(EmailTarget, recipients=("a@b.org",), subject="x\ny") == "delivery.subject"


def test_webhook_url_secret_and_timeout() -> None:
    hook = WebhookTarget(url="https://hooks.example.org:8443/in", secret=SECRET, timeout_s=300)
    assert SECRET not in repr(hook)
    for url in (
        "ftp://example.org/x",
        "https:///no-host",
        "http://example.org:99999/",
        "http://134744072/hook",  # 8.8.8.8 as one number: clients refuse it at send time
        "http://127.1/",
        "http://0x7f.1/",
    ):
        assert field_of(WebhookTarget, url=url, secret=SECRET) == "delivery.url"
    assert field_of(WebhookTarget, url="https://a.org", secret="15-characters!!") == (
        "delivery.secret"
    )
    for timeout in (0, 1e-300, 0.099, 300.5):  # 1e-300: an attacker round's instant timeout
        assert field_of(WebhookTarget, url="https://a.org", secret=SECRET, timeout_s=timeout) == (
            "delivery.timeout_s"
        )
    for timeout in (0.1, 300):
        hook = WebhookTarget(url="https://a.org", secret=SECRET, timeout_s=timeout)
        assert hook.timeout_s == timeout


def test_sftp_port_host_key_and_a_credential() -> None:
    base: dict[str, Any] = {
        "host": "sftp.example.org",
        "username": "u",
        "path": "/in",
        "host_key": HOST_KEY,
    }
    assert SftpTarget(**base, password="pw").port == 22
    assert SftpTarget(**{**base, "host": "8.8.8.8"}, password="pw").host == "8.8.8.8"
    for host in ("a" * 254, "2130706433", "files example.org"):
        assert field_of(SftpTarget, **{**base, "host": host}, password="pw") == "delivery.host"
    assert field_of(SftpTarget, **base, port=0, password="pw") == "delivery.port"
    assert field_of(SftpTarget, **{**base, "host_key": "ssh-ed25519 AAAA"}, password="pw") == (
        "delivery.host_key"
    )
    assert field_of(SftpTarget, **base) == "delivery.password"  # neither password nor key
    assert field_of(SftpTarget, **base, private_key="-----BEGIN nothing") == (
        "delivery.private_key"
    )
    assert link_ttl_seconds(SftpTarget(**base, password="pw")) == DEFAULT_LINK_TTL_SECONDS


def test_retry_policy_bounds() -> None:
    assert RetryPolicy() == RetryPolicy(max_attempts=3, base_backoff_s=30.0, max_backoff_s=900.0)
    RetryPolicy(max_attempts=10, base_backoff_s=3600, max_backoff_s=86_400)
    assert field_of(RetryPolicy, max_attempts=0) == "retry.max_attempts"
    assert field_of(RetryPolicy, max_attempts=11) == "retry.max_attempts"
    assert field_of(RetryPolicy, base_backoff_s=0) == "retry.base_backoff_s"
    assert field_of(RetryPolicy, base_backoff_s=60, max_backoff_s=59) == "retry.max_backoff_s"
    assert field_of(RetryPolicy, max_backoff_s=86_401) == "retry.max_backoff_s"


def test_the_storage_form_keeps_secrets_apart_and_reads_back() -> None:
    hook = WebhookTarget(url="https://a.org/in", secret=SECRET, timeout_s=5.0)
    assert target_parts(hook) == (
        "webhook",
        {"url": "https://a.org/in", "timeout_s": 5.0, "link_ttl_seconds": 604_800},
        {"secret": SECRET},
    )
    sftp = SftpTarget(
        host="h.example.org", username="u", path="/in", host_key=HOST_KEY, password="pw"
    )
    method, options, secrets = target_parts(sftp)
    assert (method, secrets) == ("sftp", {"password": "pw", "private_key": None})
    assert "password" not in options and options["host_key"] == HOST_KEY
    email = EmailTarget(recipients=("a@b.org",), subject="July")
    assert target_parts(email) == (
        "email",
        {"recipients": ["a@b.org"], "subject": "July", "link_ttl_seconds": 604_800},
        {},
    )
    for target in (hook, sftp, email, ApiTarget(link_ttl_seconds=120)):
        assert target_from_parts(*target_parts(target)) == target
        assert target_from_dict(target_to_dict(target)) == target
    # an option added later takes its default when an older row lacks it
    assert target_from_parts("api", {}, {}) == ApiTarget()


def test_unknown_methods_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^delivery_method: 'fax' is unknown$"):
        target_from_parts("fax", {}, {})
    with pytest.raises(TargetValidationError) as caught:
        target_from_dict({"method": "fax"})
    assert caught.value.field == "delivery.method"
