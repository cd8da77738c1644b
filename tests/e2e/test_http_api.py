"""HTTP errors are JSON with a code, a reason and the field; tenants cannot cross."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.db.tenancy import Organization, Venue, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import OrgFactory
from tests.e2e.helpers import auth, db_value, report_body, request_report_http, schedule_body


async def call(
    worker: WorkerProcess, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.request(method, path, headers=headers or {}, **kw) as r,
    ):
        return r.status, await r.json()


async def test_tokens_are_required_and_bound_to_one_tenant(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    path = "/orgs/org-a/venues/v1/metrics?grain=month&from=2026-01&to=2026-02"
    status, body = await call(main_worker, "GET", path)
    assert status == 401 and body["error"]["field"] == "Authorization"
    status, body = await call(main_worker, "GET", path, auth(settings, "org-b"))
    assert (status, body["error"]["code"]) == (403, "forbidden")
    bad = {"Authorization": "Bearer not-a-jwt"}
    status, body = await call(main_worker, "GET", path, bad)
    assert (status, body["error"]["code"]) == (401, "unauthorized")


async def test_bad_queries_name_the_field(settings: Settings, main_worker: WorkerProcess) -> None:
    h = auth(settings, "org-a")
    base = "/orgs/org-a/venues/v1/metrics"
    cases = [
        ("?grain=week&from=2026-01&to=2026-02", "grain"),
        ("?grain=month&from=2026-13&to=2026-14", "from"),
        ("?grain=month&to=2026-02", "from"),
        ("?grain=month&from=2026-03&to=2026-01", "to"),
        ("?grain=day&from=2020-01-01&to=2026-01-01", "to"),
        ("?grain=month&from=2026-01&to=2026-02&form=x", "form"),  # a typo is not ignored
        ("?grain=month&from=2026-01&to=2026-12%00", "to"),  # was blamed on from
        ("?grain=day&from=2026-02-27&to=2026-02-30", "to"),
    ]
    for query, field in cases:
        status, body = await call(main_worker, "GET", base + query, h)
        assert status == 400, (query, body)
        assert body["error"]["field"] == field, (query, body)
    status, body = await call(
        main_worker, "GET", base + "?grain=day&from=2026-02-30&to=2026-03-01", h
    )
    assert body["error"]["reason"] == "from: 2026-02-30 is not a date of the calendar"
    status, body = await call(main_worker, "GET", base + "?grain=month&from=2026-1&to=2026-03", h)
    assert body["error"]["reason"] == "from: must be YYYY-MM for grain=month, got '2026-1'"
    occupancy = "/orgs/org-a/venues/v1/occupancy?grain=day&from=2026-01-01&to=2026-01-02&foo=1"
    status, body = await call(main_worker, "GET", occupancy, h)
    assert (status, body["error"]["field"]) == (400, "foo"), body
    assert (
        body["error"]["reason"] == "unknown query parameter 'foo'; allowed: ['from', 'grain', 'to']"
    )


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/orgs/org-a/clients/c%2F1/interactions", "path.client"),
        ("/orgs/org-a/clients/%F0%9F%98%80/interactions", "path.client"),
        (f"/orgs/org-a/clients/{'a' * 129}/interactions", "path.client"),
        ("/orgs/org-a/suppliers/~ids/activity?from=2026-01&to=2026-01", "path.supplier"),
        ("/orgs/org-a/bookings/b%201/payments", "path.booking"),
        ("/orgs/org-a/venues/ba%20rn/metrics?grain=month&from=2026-01&to=2026-02", "path.venue"),
        ("/orgs/org%20a/payments/summary", "path.org"),
        ("/orgs/org-a/interactions/summary?from=2026-01&to=2026-02&from=2025-01", "from"),
    ],
)
async def test_path_ids_no_event_could_carry_and_repeated_parameters_are_400s(
    settings: Settings, main_worker: WorkerProcess, path: str, field: str
) -> None:
    status, body = await call(main_worker, "GET", path, auth(settings, "org-a"))
    assert (status, body["error"]["code"], body["error"]["field"]) == (400, "invalid_field", field)


async def test_bad_report_requests_are_400_naming_the_field(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    h = auth(settings, "org-a")
    good = report_body("2026-01-01", "2026-01-31")
    cases: list[tuple[Any, str]] = [
        ({**good, "report_type": "horoscope"}, "$.report_type"),
        ({**good, "output_formats": ["csv", "docx"]}, "$.output_formats"),
        ({**good, "date_to": "2025-12-31"}, "$.date_to"),
        ({**good, "date_from": "01/01/2026"}, "$.date_from"),
        ({**good, "priority": "urgent"}, "$.priority"),
        ({**good, "organization_id": "org-b"}, "$.organization_id"),
        ({**good, "surprise": 1}, "$.surprise"),
        ({**good, "data_filters": {"venue_id": ["../x"]}}, "$.data_filters.venue_id"),
        ([1, 2], "$"),
    ]
    for body_in, field in cases:
        status, body = await call(main_worker, "POST", "/orgs/org-a/reports", h, json=body_in)
        assert status == 400, (body_in, body)
        assert body["error"]["field"] == field, (body_in, body)
    status, body = await call(main_worker, "POST", "/orgs/org-a/reports", h, data=b"{oops")
    assert (status, body["error"]["code"]) == (400, "invalid_json")
    # organisation unknown to the database
    status, body = await call(main_worker, "POST", "/orgs/org-a/reports", h, json=good)
    assert (status, body["error"]["field"]) == (404, "organization_id")
    status, body = await call(main_worker, "GET", "/orgs/org-a/reports/nope", h)
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(main_worker, "GET", "/orgs/org-a/reports/nope/files/xlsx", h)
    assert (status, body["error"]["field"]) == (400, "path.fmt")
    assert "['csv', 'excel', 'json', 'pdf', 'powerpoint']" in body["error"]["reason"]


async def test_a_report_that_cannot_be_built_ends_failed_with_its_cause(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(
            conn, Organization("no-venues-org", "Empty", "Europe/Paris", "EUR")
        )
    finally:
        await conn.close()
    status = await request_report_http(
        main_worker.url,
        settings,
        "no-venues-org",
        {
            "report_type": "monthly_booking_summary",
            "date_from": "2026-01-01",
            "date_to": "2026-01-31",
            "output_formats": ["csv", "json"],
        },
    )
    assert status["status"] == "failed"
    assert status["error"] == "organization_id: 'no-venues-org' has no venues"
    # a venue the organisation does not have is refused before anything is recorded
    typo = {
        "report_type": "monthly_booking_summary",
        "date_from": "2026-01-01",
        "date_to": "2026-01-31",
        "output_formats": ["csv"],
        "data_filters": {"venue_id": ["city-hotl"]},
    }
    h = auth(settings, "no-venues-org")
    code, body = await call(main_worker, "POST", "/orgs/no-venues-org/reports", h, json=typo)
    assert (code, body["error"]["field"]) == (400, "$.data_filters.venue_id"), body
    assert "['city-hotl']" in body["error"]["reason"]
    assert status["artifacts"] == []


async def test_framework_errors_are_json_too(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    status, body = await call(main_worker, "GET", "/no/such/route")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await call(main_worker, "PATCH", "/health")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


async def test_known_report_id_is_a_conflict_and_internal_webhooks_are_refused(
    settings: Settings, main_worker: WorkerProcess, make_org: OrgFactory
) -> None:
    await make_org("conflict-org", name="C", zone="Europe/Paris", currency="EUR")
    h = auth(settings, "conflict-org")
    body_in = {
        "report_id": "same-id-1",
        "report_type": "monthly_booking_summary",
        "date_from": "2026-01-01",
        "date_to": "2026-01-31",
        "output_formats": ["csv"],
    }
    first = await request_report_http(main_worker.url, settings, "conflict-org", body_in)
    assert first["status"] == "failed"  # the organisation has no venues
    # a file: not requested, then not completed, each said (a trial user read "no completed
    # 'pdf' file" of a report never asked in PDF)
    files = "/orgs/conflict-org/reports/same-id-1/files"
    status, body = await call(main_worker, "GET", f"{files}/pdf", h)
    assert (status, body["error"]["field"], body["error"]["reason"]) == (
        404,
        "path.fmt",
        "pdf was not requested for this report (formats: csv)",
    )
    status, body = await call(main_worker, "GET", f"{files}/csv", h)
    assert (status, body["error"]["reason"]) == (
        404,
        "the report failed: a report has files once it is completed",
    )
    status, body = await call(
        main_worker,
        "POST",
        "/orgs/conflict-org/reports",
        h,
        json={**body_in, "output_formats": ["json"]},
    )
    assert (status, body["error"]["field"]) == (409, "$.report_id")
    # ids are per organisation: another organisation's "same-id-1" is its own report, and
    # conflict-org's stays as it was (issue 9: no answer reveals another tenant's ids)
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization("other-org", "O", "Europe/Paris", "EUR"))
    finally:
        await conn.close()
    status, body = await call(
        main_worker, "POST", "/orgs/other-org/reports", auth(settings, "other-org"), json=body_in
    )
    assert (status, body["report_id"]) == (202, "same-id-1")
    status, body = await call(main_worker, "GET", "/orgs/conflict-org/reports/same-id-1", h)
    assert (status, body["status"], body["updated_at"]) == (200, "failed", first["updated_at"])
    # dates outside 1900..2099 are refused before any query runs
    status, body = await call(
        main_worker,
        "POST",
        "/orgs/conflict-org/reports",
        h,
        json={**body_in, "report_id": "far-1", "date_from": "0001-01-01", "date_to": "0001-12-31"},
    )
    assert (status, body["error"]["field"]) == (400, "$.date_from")
    status, body = await call(
        main_worker, "POST", "/orgs/conflict-org/reports", h, json={**body_in, "report_id": ""}
    )
    assert (status, body["error"]["field"]) == (400, "$.report_id")
    status, body = await call(
        main_worker,
        "GET",
        "/orgs/conflict-org/venues/v1/metrics?grain=day&from=9999-12-31&to=9999-12-31",
        h,
    )
    assert (status, body["error"]["field"]) == (400, "from")
    status, body = await call(main_worker, "GET", "/orgs/conflict-org/reports/%00", h)
    assert (status, body["error"]["code"]) == (400, "invalid_field")

    schedule = schedule_body(
        delivery={
            "method": "webhook",
            "url": "http://169.254.169.254/latest/meta-data",
            "secret": "s" * 20,
        }
    )
    status, body = await call(main_worker, "POST", "/orgs/conflict-org/schedules", h, json=schedule)
    assert (status, body["error"]["field"]) == (400, "$.delivery.url")
    # loopback written the ways the C library (and so an HTTP client) also reads it
    for host in [
        "localhost",
        "0x7f000001",
        "2130706433",
        "127.1",
        "0177.0.0.1",
        "127.0.0.1.",
        "LOCALHOST.",
        "%31%32%37.0.0.1",
        "127.0.0.1%00.example.com",
        "0",
        "[::ffff:127.0.0.1]",
        "127\u30020\u30020\u30021",  # ideographic full stops: the HTTP client reads '.'
        "169\uff0e254\uff0e169\uff0e254",  # fullwidth full stops, the metadata address
    ]:
        schedule["delivery"]["url"] = f"http://{host}:8080/hook"
        status, body = await call(
            main_worker, "POST", "/orgs/conflict-org/schedules", h, json=schedule
        )
        assert (status, body["error"]["field"]) == (400, "$.delivery.url"), host
    schedule["cron"] = "0 8 1 * * *"
    schedule["delivery"]["url"] = "https://hooks.example.org/x"
    status, body = await call(main_worker, "POST", "/orgs/conflict-org/schedules", h, json=schedule)
    assert (status, body["error"]["field"]) == (400, "$.cron")


async def test_a_body_id_other_than_the_paths_or_a_repeated_key_is_refused(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    """A security review's findings: ``PUT …/schedules/amonthly`` with ``"schedule_id":
    "monthly"`` answered 200 (the body's id ignored), and a repeated key was taken with its
    last value."""
    org = "body-ids-org"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org, "UTC", "EUR"))
    finally:
        await conn.close()
    h = auth(settings, org)
    status, body = await call(
        main_worker, "POST", f"/orgs/{org}/schedules", h, json=schedule_body(schedule_id="amonthly")
    )
    assert status in (201, 409), body  # 409: a rerun against the same database
    status, body = await call(  # the body may repeat the path's id
        main_worker,
        "PUT",
        f"/orgs/{org}/schedules/amonthly",
        h,
        json=schedule_body(schedule_id="amonthly"),
    )
    assert (status, body["schedule_id"], body["cron"]) == (200, "amonthly", "0 8 1 * *"), body
    status, body = await call(
        main_worker,
        "PUT",
        f"/orgs/{org}/schedules/amonthly",
        h,
        json=schedule_body(schedule_id="monthly", cron="0 9 1 * *"),
    )
    assert (status, body) == (
        400,
        {
            "error": {
                "code": "invalid_field",
                "reason": "'monthly' differs from the path's schedule_id 'amonthly' (a schedule"
                " keeps its id: leave it out of the body, or send the same)",
                "field": "$.schedule_id",
            }
        },
    )
    status, body = await call(main_worker, "GET", f"/orgs/{org}/schedules/amonthly", h)
    assert (status, body["cron"]) == (200, "0 8 1 * *")  # unchanged
    status, body = await call(main_worker, "GET", f"/orgs/{org}/schedules/monthly", h)
    assert (status, body["error"]["field"]) == (404, "path.schedule_id")
    report = report_body("2016-01-01", "2016-01-31")
    fields = ", ".join(f'"{k}": {orjson.dumps(v).decode()}' for k, v in report.items())
    raw = '{"report_id": "dup-a", ' + fields + ', "report_id": "dup-b"}'
    status, body = await call(
        main_worker,
        "POST",
        f"/orgs/{org}/reports",
        {**h, "Content-Type": "application/json"},
        data=raw.encode(),
    )
    assert (status, body["error"]["code"], body["error"]["field"]) == (
        400,
        "invalid_field",
        "$.report_id",
    ), body
    assert body["error"]["reason"] == "the key 'report_id' appears twice in an object; send it once"


async def test_a_preview_runs_as_the_schedule_would(
    settings: Settings, main_worker: WorkerProcess, make_org: OrgFactory
) -> None:
    """A trial user's preview of ``* * * * *`` listed every minute while the schedule ran
    every five (its min_interval_seconds), and it required a time zone a schedule may leave
    out. Expected times are computed here from the minute the answer was given."""
    await make_org("preview-org", name="P", zone="America/New_York", currency="USD")
    h = auth(settings, "preview-org", role="admin")
    base = "/orgs/preview-org/schedules/preview"
    status, body = await call(main_worker, "GET", base + "?cron=*%20*%20*%20*%20*", h)
    assert status == 200, body
    assert (body["time_zone"], body["min_interval_seconds"], body["complete"]) == (
        "America/New_York",
        300,
        True,
    )
    times = [datetime.fromisoformat(t) for t in body["fire_times"]]
    assert len(times) == 5 and times[0].second == 0
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(minutes=5)] * 4
    status, body = await call(
        main_worker, "GET", base + "?cron=0%208%20*%20*%20*&count=3&min_interval_seconds=0", h
    )
    # 08:00 in New York: 12:00 or 13:00 UTC by the date's offset
    for t in (datetime.fromisoformat(x) for x in body["fire_times"]):
        local = t.astimezone(ZoneInfo("America/New_York"))
        assert (local.hour, local.minute) == (8, 0), t
    status, body = await call(main_worker, "GET", base + "?cron=0%208%20*%20*%20*&time_zone=UTC", h)
    assert {datetime.fromisoformat(x).hour for x in body["fire_times"]} == {8}
    # a rare expression, 1,000 asked (an attacker round's held the loop 3 s): the fifth
    # Mondays of February up to 2099 only, at once
    rare = "?cron=0%200%20*%202%201%235&count=1000&time_zone=UTC"
    started = asyncio.get_running_loop().time()
    status, body = await call(main_worker, "GET", base + rare, h)
    assert asyncio.get_running_loop().time() - started < 2.0
    years = [datetime.fromisoformat(x).year for x in body["fire_times"]]
    assert status == 200 and body["complete"] is True and years and max(years) <= 2099, body
    assert all(datetime.fromisoformat(x).day == 29 for x in body["fire_times"])
    for query, field in (
        ("?cron=*%20*%20*%20*%20*&min_interval_seconds=-1", "min_interval_seconds"),
        ("?cron=*%20*%20*%20*%20*&min_interval_seconds=x", "min_interval_seconds"),
        ("?cron=*%20*%20*%20*%20*&count=0", "count"),
        ("?cron=*%20*%20*%20*%20*&time_zone=EST", "time_zone"),
        ("?cron=@daily", "cron"),
        ("?cron=*%20*%20*%20*%20*&tz=UTC", "tz"),
        ("?time_zone=UTC", "cron"),
    ):
        status, body = await call(main_worker, "GET", base + query, h)
        assert (status, body["error"]["field"]) == (400, field), (query, body)


async def test_a_schedule_answer_masks_the_webhook_urls_credentials_and_query(
    settings: Settings, main_worker: WorkerProcess, make_org: OrgFactory
) -> None:
    """An attacker round read ``http://us:PW@host/sched?tok=…`` back from every schedule
    answer (the delivery log masks it). Saving a masked URL back is refused: it would break
    the delivery silently."""
    await make_org("mask-org", name="M", zone="UTC", currency="EUR")
    h = auth(settings, "mask-org", role="admin")
    secret_url = "https://us:PW-IN-URL@hooks.example.org:8443/sched?tok=URLTOKEN"
    schedule = schedule_body(
        schedule_id="masked",
        delivery={"method": "webhook", "url": secret_url, "secret": "s" * 20},
    )
    status, created = await call(main_worker, "POST", "/orgs/mask-org/schedules", h, json=schedule)
    assert status == 201, created
    shown = "https://***@hooks.example.org:8443/sched?***"
    assert created["delivery"]["url"] == shown
    status, got = await call(main_worker, "GET", "/orgs/mask-org/schedules/masked", h)
    assert (status, got["delivery"]["url"]) == (200, shown)
    status, listed = await call(main_worker, "GET", "/orgs/mask-org/schedules", h)
    assert "PW-IN-URL" not in orjson.dumps(listed).decode()
    assert "URLTOKEN" not in orjson.dumps(listed).decode()
    back = {**schedule, "delivery": {**schedule["delivery"], "url": shown}}
    status, body = await call(main_worker, "PUT", "/orgs/mask-org/schedules/masked", h, json=back)
    assert (status, body["error"]["field"]) == (400, "$.delivery.url"), body
    assert "as the API shows it" in body["error"]["reason"]


async def test_recipient_filters_every_run_would_fail_on_are_refused_at_once(
    settings: Settings, main_worker: WorkerProcess, make_org: OrgFactory
) -> None:
    """An attacker round saved a schedule filtering a recipient to another organisation's
    venue (and one filtering a ``compliance`` report): 201, then every run failed."""
    await make_org(
        "filters-org", name="F", zone="UTC", currency="EUR", venues=[Venue("hall", "Hall", 2)]
    )
    h = auth(settings, "filters-org", role="admin")
    email = {"method": "email", "recipients": ["ana@example.org", "rui@example.org"]}

    def body(report_type: str, values: list[str]) -> dict[str, Any]:
        return schedule_body(
            report_type=report_type,
            delivery=email,
            recipient_filters=[
                {"recipient": "rui@example.org", "field": "venue_id", "values": values}
            ],
        )

    cases = [
        (body("monthly_booking_summary", ["hall", "vb1"]), "$.recipient_filters[0].values"),
        (body("compliance", ["hall"]), "$.recipient_filters[0].field"),
    ]
    for schedule, field in cases:
        status, answer = await call(
            main_worker, "POST", "/orgs/filters-org/schedules", h, json=schedule
        )
        assert (status, answer["error"]["field"]) == (400, field), answer
    status, answer = await call(
        main_worker,
        "POST",
        "/orgs/filters-org/schedules",
        h,
        json=body("monthly_booking_summary", ["hall"]),
    )
    assert status == 201, answer
    assert (
        "unknown venue(s) ['vb1']"
        in (await call(main_worker, "POST", "/orgs/filters-org/schedules", h, json=cases[0][0]))[1][
            "error"
        ]["reason"]
    )


async def test_a_venue_filter_on_an_organisation_wide_type_is_refused_before_recording(
    settings: Settings, main_worker: WorkerProcess, make_org: OrgFactory
) -> None:
    """A trial user's organisation-wide token got 202 for ``planner_portfolio`` with a venue
    filter; the report was recorded, then failed on the filter."""
    await make_org(
        "wide-org", name="W", zone="UTC", currency="EUR", venues=[Venue("hall", "Hall", 2)]
    )
    h = auth(settings, "wide-org", role="analyst")
    body = {
        "report_id": "wide-1",
        "report_type": "planner_portfolio",
        "date_from": "2025-01-01",
        "date_to": "2025-06-30",
        "output_formats": ["csv"],
        "data_filters": {"venue_id": ["hall"]},
    }
    status, answer = await call(main_worker, "POST", "/orgs/wide-org/reports", h, json=body)
    assert (status, answer["error"]["field"]) == (400, "$.data_filters.venue_id"), answer
    assert "covers the whole organisation" in answer["error"]["reason"]
    recorded = await db_value(
        settings, "SELECT count(*) FROM reports WHERE organization_id = 'wide-org'"
    )
    assert recorded == 0
