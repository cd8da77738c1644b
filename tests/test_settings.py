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
        ("WEDDING_PREFETCH_BACKOFF_MS", "-1", "WEDDING_PREFETCH_BACKOFF_MS: must be between 0"),
        ("WEDDING_WEB_PORT", "abc", "WEDDING_WEB_PORT: expected an integer"),
        ("WEDDING_WEB_PORT", "70000", "WEDDING_WEB_PORT: must be between 1 and 65535"),
        ("WEDDING_BATCH_MAX_EVENTS", "0", "WEDDING_BATCH_MAX_EVENTS: must be between 1"),
        ("WEDDING_FETCH_PARTITION_BYTES", "1000", "WEDDING_FETCH_PARTITION_BYTES: must be between"),
        ("WEDDING_FETCH_PARTITION_BYTES", "2GiB", "WEDDING_FETCH_PARTITION_BYTES: expected an int"),
        ("WEDDING_BATCH_MAX_SECONDS", "nan", "WEDDING_BATCH_MAX_SECONDS: must be a number"),
        ("WEDDING_BATCH_MAX_SECONDS", "inf", "WEDDING_BATCH_MAX_SECONDS: must be a number"),
        ("WEDDING_SESSION_TIMEOUT_S", "abc", "WEDDING_SESSION_TIMEOUT_S: expected a number"),
        ("WEDDING_GRACE_S", "-1", "WEDDING_GRACE_S: must be a number between 0"),
        ("WEDDING_PARTITIONS", "0", "WEDDING_PARTITIONS: must be between 1"),
        ("WEDDING_OFFSET_RESET", "bogus", "WEDDING_OFFSET_RESET: must be one of earliest, latest"),
        ("WEDDING_GC_GEN0_THRESHOLD", "-1", "WEDDING_GC_GEN0_THRESHOLD: must be between 0"),
        ("WEDDING_SCHEDULING", "maybe", "WEDDING_SCHEDULING: must be 1/true/yes/on or 0/f"),
        ("WEDDING_ALLOW_PRIVATE_TARGETS", "2", "WEDDING_ALLOW_PRIVATE_TARGETS: must be 1/true"),
        ("WEDDING_REPORT_LANES", "normal=0", "WEDDING_REPORT_LANES: 'normal=0': the concurr"),
        ("WEDDING_REPORT_LANES", "normal=x", "WEDDING_REPORT_LANES: 'normal=x': the concurr"),
        ("WEDDING_REPORT_LANES", "normal", "WEDDING_REPORT_LANES: 'normal': the concurrency"),
        ("WEDDING_REPORT_LANES", "bulk=2", "WEDDING_REPORT_LANES: unknown lane 'bulk' in"),
        ("WEDDING_REPORT_LANES", "low=1,low=2", "WEDDING_REPORT_LANES: lane 'low' is given tw"),
        ("WEDDING_JWT_SECRET", "x", "WEDDING_JWT_SECRET: must be at least 32 bytes, got 1"),
        ("WEDDING_JWT_SECRET", "", "WEDDING_JWT_SECRET: must be at least 32 bytes, got 0"),
        # the delivery section (load_delivery_settings, through load_settings)
        ("WEDDING_SMTP_PORT", "abc", "WEDDING_SMTP_PORT: expected an integer"),
        ("WEDDING_SMTP_PORT", "0", "WEDDING_SMTP_PORT: must be between 1 and 65535"),
        ("WEDDING_SFTP_CONNECT_TIMEOUT_S", "nan", "WEDDING_SFTP_CONNECT_TIMEOUT_S: must be"),
        ("WEDDING_EMAIL_MAX_ATTACHMENT_BYTES", "-1", "WEDDING_EMAIL_MAX_ATTACHMENT_BYTES: must"),
        # an operator's trial: these three started a worker that then answered bad tokens 500,
        # limited nothing, or would have refused every read
        ("WEDDING_AUTH_FAILURE_LIMIT", "lots", "WEDDING_AUTH_FAILURE_LIMIT: 'lots' is not a rate"),
        ("WEDDING_AUTH_FAILURE_LIMIT", "0/minute", "WEDDING_AUTH_FAILURE_LIMIT: '0/minute' allo"),
        # an attacker round: the second window was dropped unsaid (limits' parse keeps the first)
        ("WEDDING_AUTH_FAILURE_LIMIT", "3/minute,100/second", "'3/minute,100/second' is 2 rates"),
        ("WEDDING_RATE_LIMITS", "reads=3/minute;9/hour", "reads: '3/minute;9/hour' is 2 rates"),
        ("WEDDING_REDIS_URL", "http://x", "WEDDING_REDIS_URL: 'http://x' is not a Redis URL"),
        ("WEDDING_ORG_RATE_LIMITS", "reads=0/minute", "_ORG_RATE_LIMITS: reads: '0/minute' all"),
        ("WEDDING_RATE_LIMITS", "reads=abc", "WEDDING_RATE_LIMITS: reads: 'abc' is not a rate"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        load_settings()
    with pytest.raises(ValueError, match=message):  # the same from a mapping
        load_settings({variable: value})


def test_good_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEDDING_FETCH_MAX_WAIT_MS", " 35 ")
    monkeypatch.setenv("WEDDING_BATCH_MAX_SECONDS", "0.01")
    monkeypatch.setenv("WEDDING_OFFSET_RESET", "latest")
    monkeypatch.setenv("WEDDING_GRACE_S", "0")
    monkeypatch.setenv("WEDDING_FETCH_PARTITION_BYTES", "4194304")
    s = load_settings()
    assert (s.fetch_max_wait_ms, s.batch_max_seconds, s.offset_reset, s.grace_s) == (
        35,
        0.01,
        "latest",
        0.0,
    )
    assert s.fetch_partition_bytes == 4_194_304
    monkeypatch.setenv("WEDDING_AUTH_FAILURE_LIMIT", " 3/minute ")
    monkeypatch.setenv("WEDDING_REDIS_URL", "rediss://cache.internal:6380/0")
    monkeypatch.setenv("WEDDING_ORG_RATE_LIMITS", "reads=1/second")
    s = load_settings()
    assert (s.auth_failure_limit, s.redis_url) == ("3/minute", "rediss://cache.internal:6380/0")
    assert s.org_rate_limits["reads"] == "1/second"
    monkeypatch.setenv("WEDDING_REPORT_LANES", " critical = 6 , low=2 ")
    assert load_settings().report_lane_concurrency == {
        "critical": 6,
        "high": 1,
        "normal": 1,
        "low": 2,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("off", False)],
)
def test_switches_read_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("WEDDING_SCHEDULING", value)
    assert load_settings().scheduling_enabled is expected


def test_the_environment_is_read_by_load_settings_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Settings()`` is the written defaults; ``load_settings`` reads each variable once,
    and an override wins over the variable (the rest still come from the environment)."""
    from stream_app.settings import Settings

    monkeypatch.setenv("WEDDING_PARTITIONS", "7")
    monkeypatch.setenv("WEDDING_GRACE_S", "90")
    monkeypatch.setenv("POSTGRES_DSN", "postgresql://wedding_app@db.example:6432/w")
    assert Settings().topic_partitions == 4
    assert Settings().grace_s == 3600.0
    loaded = load_settings()
    assert (loaded.topic_partitions, loaded.grace_s) == (7, 90.0)
    assert loaded.postgres_system_dsn == "postgresql://wedding_system@db.example:6432/w"
    overridden = load_settings(topic_partitions=2)
    assert (overridden.topic_partitions, overridden.grace_s) == (2, 90.0)
    assert load_settings({"WEDDING_PARTITIONS": "3"}).topic_partitions == 3
    with pytest.raises(AttributeError):
        loaded.topic_partitions = 5  # type: ignore[misc]
