"""Every numeric or enumerated setting refuses a bad value with a message naming its variable."""

from __future__ import annotations

import pytest

from stream_app.settings import load_settings


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WEDDING_FETCH_MAX_WAIT_MS", "abc", "WEDDING_FETCH_MAX_WAIT_MS: expected an integer"),
        ("WEDDING_FETCH_MAX_WAIT_MS", "-5", "WEDDING_FETCH_MAX_WAIT_MS: must be between 0"),
        ("WEDDING_FETCH_MAX_WAIT_MS", "99999999999", "between 0 and 60000"),
        ("WEDDING_WEB_PORT", "abc", "WEDDING_WEB_PORT: expected an integer"),
        ("WEDDING_WEB_PORT", "70000", "WEDDING_WEB_PORT: must be between 1 and 65535"),
        ("WEDDING_BATCH_MAX_EVENTS", "0", "WEDDING_BATCH_MAX_EVENTS: must be between 1"),
        ("WEDDING_BATCH_MAX_SECONDS", "nan", "WEDDING_BATCH_MAX_SECONDS: must be a number"),
        ("WEDDING_BATCH_MAX_SECONDS", "inf", "WEDDING_BATCH_MAX_SECONDS: must be a number"),
        ("WEDDING_SESSION_TIMEOUT_S", "abc", "WEDDING_SESSION_TIMEOUT_S: expected a number"),
        ("WEDDING_GRACE_S", "-1", "WEDDING_GRACE_S: must be a number between 0"),
        ("WEDDING_PARTITIONS", "0", "WEDDING_PARTITIONS: must be between 1"),
        ("WEDDING_OFFSET_RESET", "bogus", "WEDDING_OFFSET_RESET: must be one of earliest, latest"),
        ("WEDDING_GC_GEN0_THRESHOLD", "-1", "WEDDING_GC_GEN0_THRESHOLD: must be between 0"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_good_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEDDING_FETCH_MAX_WAIT_MS", " 35 ")
    monkeypatch.setenv("WEDDING_BATCH_MAX_SECONDS", "0.01")
    monkeypatch.setenv("WEDDING_OFFSET_RESET", "latest")
    monkeypatch.setenv("WEDDING_GRACE_S", "0")
    s = load_settings()
    assert (s.fetch_max_wait_ms, s.batch_max_seconds, s.offset_reset, s.grace_s) == (
        35,
        0.01,
        "latest",
        0.0,
    )
