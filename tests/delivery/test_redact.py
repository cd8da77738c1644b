"""What readers without ``deliveries:read`` see of a delivery's detail (``public_detail``)."""

from __future__ import annotations

import pytest

from stream_app.delivery.redact import HIDDEN_CAUSE, public_detail, strip_urls


@pytest.mark.parametrize(
    ("detail", "shown"),
    [
        ("POST http://h.test/x: HTTP 503 'busy, try db-7.internal'", "POST <target>: HTTP 503"),
        ("POST http://h.test/x: no response within 2 s", "POST <target>: no response within 2 s"),
        ("HTTP 200", "HTTP 200"),
        ("2 link(s) valid until 2026-12-12T19:00:00+00:00", None),
        ("3 file(s)", None),
        ("already delivered", None),
        (
            "POST http://h.test/x: HTTP 502 'x'; attempt 2 due at 2026-12-05T19:40:00+00:00",
            "POST <target>: HTTP 502; attempt 2 due at 2026-12-05T19:40:00+00:00",
        ),
        (
            "POST http://secret-partner.invalid/h: ClientConnectorError: Cannot connect to host"
            " secret-partner.invalid:80 ssl:default [Name or service not known]",
            HIDDEN_CAUSE,
        ),
        ("refused: 'vm' resolves to 127.0.0.1 (loopback); deliveries go to public", HIDDEN_CAUSE),
        ("250 2.0.0 Ok: queued as 4F3 by mail.partner.example", HIDDEN_CAUSE),
        (
            "sftp://files.partner.example/in: ConnectionLost: closed; attempt 3 due at T",
            HIDDEN_CAUSE + "; attempt 3 due at T",
        ),
    ],
)
def test_public_detail_keeps_only_what_names_no_receiver(detail: str, shown: str | None) -> None:
    assert public_detail(strip_urls(detail)) == (detail if shown is None else shown)
