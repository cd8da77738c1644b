"""Internal webhook and SFTP hosts are refused when a target is created, by the same rule as
at send time (attacker report s4, item 8: CGNAT and 6to4 literals were accepted)."""

from __future__ import annotations

import dataclasses

import pytest

from stream_app.app import settings as app_settings
from stream_app.web import delivery_targets
from stream_app.web.delivery_targets import check_target_address
from stream_app.web.errors import ApiError


@pytest.fixture
def private_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    refusing = dataclasses.replace(app_settings, allow_private_targets=False)
    monkeypatch.setattr(delivery_targets, "settings", refusing)


@pytest.mark.parametrize(
    "host",
    ["100.64.0.1", "[2002:a9fe:a9fe::]", "127.0.0.1", "[::ffff:127.0.0.1]", "169.254.169.254"],
)
def test_internal_literals_are_refused(private_refused: None, host: str) -> None:
    with pytest.raises(ApiError) as err:
        check_target_address(host, "$.delivery.url")
    assert err.value.status == 400 and err.value.field == "$.delivery.url"


@pytest.mark.parametrize("host", ["93.184.215.14", "example.com", "[2606:4700::1111]"])
def test_public_hosts_pass(private_refused: None, host: str) -> None:
    check_target_address(host, "$.delivery.url")
