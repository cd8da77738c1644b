"""The one id rule (stream_app.schemas.ids): the same verdict at every entry that uses it."""

from __future__ import annotations

import orjson
import pytest

from stream_app.cli import main as cli_main
from stream_app.schedules.model import ScheduleValidationError
from stream_app.schemas.base import EventValidationError, decode_event
from stream_app.schemas.ids import ID_RULE, InvalidIdError, check_id, is_valid_id
from stream_app.schemas.reports import ReportRequest
from stream_app.web.errors import ApiError
from stream_app.web.views import check_path_ids
from tests.schedules.builders import schedule

BAD = [
    "",
    ".",
    "..",
    "a/b",
    "/abs",
    "a\\b",
    "%2e%2e",
    "a b",
    "a\x00b",
    "a\x01",
    "ok\n",  # `$` would have accepted a final newline
    "\nok",
    "tab\t",
    "é",
    "x" * 129,
]
GOOD = ["a", "shared-1", "...", "..a", ".hidden", "a.b", "org:1_x-y", "x" * 128]

REQUEST = {
    "schema_version": 1,
    "report_id": "r-1",
    "organization_id": "org-1",
    "user_id": "u-1",
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-01-31",
    "output_formats": ["csv"],
    "requested_at": "2026-02-01T00:00:00+00:00",
}


@pytest.mark.parametrize("value", BAD)
def test_bad_ids_are_refused_naming_the_field(value: str) -> None:
    assert not is_valid_id(value)
    with pytest.raises(InvalidIdError) as err:
        check_id("report_id", value)
    assert err.value.field == "report_id"
    assert str(err.value).startswith("report_id: 1-128 characters")


@pytest.mark.parametrize("value", GOOD)
def test_good_ids_pass(value: str) -> None:
    assert is_valid_id(value) and check_id("x", value) == value


def test_non_strings_are_not_ids() -> None:
    assert not is_valid_id(None) and not is_valid_id(12) and not is_valid_id(b"a")


@pytest.mark.parametrize("field", ["report_id", "organization_id", "user_id"])
@pytest.mark.parametrize("value", BAD)
def test_kafka_report_request_names_the_field(field: str, value: str) -> None:
    raw = orjson.dumps({**REQUEST, field: value})
    with pytest.raises(EventValidationError) as err:
        decode_event(raw, ReportRequest)
    assert err.value.field == f"$.{field}"
    # the rule in words, as the path and CLI checks give it (not the regular expression)
    if value and len(value) <= 128:
        assert err.value.reason == f"must be {ID_RULE}"
    assert "regex" not in err.value.reason


def test_kafka_report_request_with_a_good_id_decodes() -> None:
    assert decode_event(orjson.dumps(REQUEST), ReportRequest).report_id == "r-1"


@pytest.mark.parametrize("name", ["report_id", "schedule_id", "org"])
@pytest.mark.parametrize("value", [".", "..", "a\x01", "ok\n"])
def test_http_path_ids_are_refused_as_400_naming_the_segment(name: str, value: str) -> None:
    with pytest.raises(ApiError) as err:
        check_path_ids({name: value})
    assert err.value.status == 400 and err.value.field == f"path.{name}"


@pytest.mark.parametrize("value", ["..", ".", "a/b", "ok\n"])
def test_schedule_ids_follow_the_same_rule(value: str) -> None:
    with pytest.raises(ScheduleValidationError) as err:
        schedule("org-1", value, cron="0 8 * * *", time_zone="Europe/London")
    assert err.value.field == "schedule_id"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["token", "--org", ".."], "--org"),
        (["token", "--org", "a/b"], "--org"),
        (["token", "--org", "ok", "--user", "."], "--user"),
        (["org", "..", "--zone", "Europe/Lisbon"], "ORG"),
        (["venue", "ok", "a\x01", "--capacity", "1"], "VENUE"),
        (["cancel", "--org", "ok", ".."], "REPORT_ID"),
        (
            [
                "report",
                "--org",
                "ok",
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-02",
                "--report-id",
                "..",
            ],
            "--report-id",
        ),
    ],
)
def test_cli_refuses_bad_ids_before_any_connection(
    argv: list[str],
    option: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no services: the id is refused before anything would be contacted
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("POSTGRES_DSN", "postgresql://nobody@127.0.0.1:1/none")
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {option}: 1-128 characters"), err
