"""Tenant-scoped identity, attacked against a real worker, broker and database (issue 9).

Two organisations, ``wall-a`` (the attacker) and ``wall-b`` (the victim), with different
bookings. Each test performs an attack that used to work and checks that it fails for the
attacker while the victim's report rows, runs and files stay as they were:

(a) A requests a report with B's report id, and with the id of B's scheduled report;
(b) report ids ``..``, ``.``, ``a/b``, ``%2e%2e`` and control characters, over HTTP, Kafka and
    the CLI (400 naming the field, dead-lettered, refused; the store's file count unchanged);
(c) a schedule id of another organisation is no conflict (both own ``monthly``);
(d) a run left ``submitted`` (its report never completes) is failed with the cause.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from stream_app.db.roles import APP_ROLE, as_role
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.topics import DEAD_LETTER, REPORT_REQUESTS
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, db_rows, download, read_topic, request_report_http, send
from tests.e2e.test_report_processing import (
    Booking,
    bookings_of,
    csv_figures,
    events_of,
    expected,
    folded_bookings,
    produce,
    setup_org,
    wait_until,
)

pytestmark = pytest.mark.slow
A, B = "wall-a", "wall-b"
GROUP = "wedding-wall-tests"
RUN_TIMEOUT_S = 20
BODY: dict[str, Any] = {
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-03-31",
    "output_formats": ["csv", "json"],
    "cache_strategy": "skip",
}
BAD_IDS = ["..", ".", "a/b", "%2e%2e", "a\x01b", "ok\n", "a\\b", ""]


@pytest.fixture(scope="module")
async def wall(
    settings: Settings, worker_factory: WorkerFactory
) -> AsyncIterator[tuple[WorkerProcess, dict[str, list[Booking]]]]:
    """A worker of its own (scheduling on, a tick a second, a short run timeout) and the two
    organisations with their bookings folded (A: 12 bookings, B: 30)."""
    worker = worker_factory.start(
        GROUP,
        "w",
        WEDDING_SCHEDULER_INTERVAL_S="1",
        WEDDING_SCHEDULE_RUN_TIMEOUT_S=str(RUN_TIMEOUT_S),
        WEDDING_OFFSET_RESET="latest",
    )
    try:
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        books = {A: bookings_of(5, 12), B: bookings_of(9, 30)}
        for org, bookings in books.items():
            await setup_org(settings, org)
            await produce(settings, events_of(org, bookings))
        for org, bookings in books.items():

            async def folded(org: str = org, n: int = len(bookings)) -> bool:
                return await folded_bookings(worker, settings, org) == n

            await wait_until(folded, 90, f"{org} bookings folded")
        yield worker, books
    finally:
        # its consumer group would also answer later tests' report requests
        worker.stop()


def files_in(root: Path) -> dict[str, str]:
    """Every file of the artifact store: relative path → SHA-256 (an independent scan)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


async def report_row(settings: Settings, org: str, report_id: str) -> dict[str, Any]:
    rows = await db_rows(
        settings,
        "SELECT status, artifacts::text AS artifacts, generated_at, request::text AS request"
        " FROM reports WHERE organization_id = $1 AND id = $2",
        org,
        report_id,
    )
    assert len(rows) == 1, (org, report_id, rows)
    return dict(rows[0])


def by_format(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["format"]: a for a in status["artifacts"]}


async def create_schedule(
    worker: WorkerProcess, settings: Settings, org: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.post(f"/orgs/{org}/schedules", json=body, headers=auth(settings, org)) as r,
    ):
        return r.status, await r.json()


def schedule_body(schedule_id: str, cron: str = "* * * * *") -> dict[str, Any]:
    return {
        "schedule_id": schedule_id,
        "report_type": "monthly_booking_summary",
        "date_range": "last_n_days:400",
        "output_formats": ["csv"],
        "cron": cron,
        "time_zone": "Europe/Lisbon",
        "min_interval_seconds": 0,
        "delivery": {"method": "api", "link_ttl_seconds": 600},
    }


async def test_a_report_id_of_another_organisation_is_its_own_and_b_stays_intact(
    settings: Settings, wall: tuple[WorkerProcess, dict[str, list[Booking]]]
) -> None:
    worker, books = wall
    url = worker.url
    root = settings.artifact_dir
    # B's report, generated and downloaded by B
    b_status = await request_report_http(url, settings, B, {**BODY, "report_id": "shared-1"})
    assert b_status["status"] == "completed", b_status
    b_csv = await download(url, settings, B, by_format(b_status)["csv"]["download_url"])
    assert csv_figures(b_csv) == expected(books[B])
    b_row = await report_row(settings, B, "shared-1")
    b_files = {k: v for k, v in files_in(root).items() if k.startswith(f"{B}/shared-1/")}
    assert sorted(b_files) == [
        f"{B}/shared-1/monthly_booking_summary.csv",
        f"{B}/shared-1/monthly_booking_summary.json",
    ]
    # no local path in the answer: relative paths and download URLs only
    assert "file://" not in orjson.dumps(b_status).decode()
    assert by_format(b_status)["csv"]["path"] == f"{B}/shared-1/monthly_booking_summary.csv"

    # the attack: A posts a report with B's id (other content: another range)
    a_status = await request_report_http(
        url, settings, A, {**BODY, "report_id": "shared-1", "date_from": "2026-02-01"}
    )
    assert a_status["status"] == "completed", a_status
    a_csv = await download(url, settings, A, by_format(a_status)["csv"]["download_url"])
    assert csv_figures(a_csv) == {
        k: v for k, v in expected(books[A]).items() if k[1] in ("2026-02", "2026-03")
    }
    # B's row and files are exactly as before; B still downloads B's figures
    assert await report_row(settings, B, "shared-1") == b_row
    after = files_in(root)
    assert {k: after[k] for k in b_files} == b_files
    again = await download(url, settings, B, by_format(b_status)["csv"]["download_url"])
    assert again == b_csv
    # A cannot reach B's report or file: B's path with A's token is refused
    async with aiohttp.ClientSession(url) as s:
        for path in (f"/orgs/{B}/reports/shared-1", f"/orgs/{B}/reports/shared-1/files/csv"):
            async with s.get(path, headers=auth(settings, A)) as r:
                assert r.status == 403, (path, await r.text())
    # a second request of B with the same id but other content is B's own conflict: 409
    async with (
        aiohttp.ClientSession(url) as s,
        s.post(
            f"/orgs/{B}/reports",
            json={**BODY, "report_id": "shared-1", "date_to": "2026-01-31"},
            headers=auth(settings, B),
        ) as r,
    ):
        assert r.status == 409 and (await r.json())["error"]["field"] == "$.report_id"
    assert await report_row(settings, B, "shared-1") == b_row


async def test_the_same_id_on_kafka_with_other_content_is_dead_lettered_not_overwritten(
    settings: Settings, wall: tuple[WorkerProcess, dict[str, list[Booking]]]
) -> None:
    worker, _ = wall
    b_status = await request_report_http(worker.url, settings, B, {**BODY, "report_id": "kafka-1"})
    assert b_status["status"] == "completed"
    before = await report_row(settings, B, "kafka-1")
    forged = kafka_request(B, "kafka-1", date_from="2026-03-01")
    await send_requests(settings, [(f"{B}/kafka-1".encode(), orjson.dumps(forged))])
    await dead_lettered(settings, "$.report_id", b"mallory", "the forged request")
    assert await report_row(settings, B, "kafka-1") == before


async def test_a_kafka_request_for_an_unknown_organisation_is_dead_lettered(
    settings: Settings, wall: tuple[WorkerProcess, dict[str, list[Booking]]]
) -> None:
    """No tenant can read the status of an organisation that does not exist: the request
    goes to the dead-letter topic naming ``$.organization_id`` (it vanished before; s6
    attacker, F7)."""
    ghost = "no-such-org-s6"
    request = kafka_request(ghost, "ghost-1")
    await send_requests(settings, [(f"{ghost}/ghost-1".encode(), orjson.dumps(request))])
    await dead_lettered(settings, "$.organization_id", b"ghost-1", "the unknown organisation's")


def kafka_request(org: str, report_id: str, **changes: str) -> dict[str, object]:
    """A report request of ``org`` as a producer of ``report-requests`` writes it, by
    ``mallory``, with ``changes`` to :data:`BODY`."""
    return {
        **BODY,
        "schema_version": 1,
        "report_id": report_id,
        "organization_id": org,
        "user_id": "mallory",
        "requested_at": datetime.now(UTC).isoformat(),
        **changes,
    }


async def dead_lettered(settings: Settings, field: str, marker: bytes, what: str) -> None:
    """Wait (up to 60 s) until a dead-letter record names ``field`` and holds ``marker``."""
    expected = field.encode()

    async def found() -> bool:
        return any(
            dict(r.headers).get("dlq.field") == expected and marker in (r.value or b"")
            for r in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
        )

    await wait_until(found, 60, f"{what} request dead-lettered")


async def send_requests(settings: Settings, msgs: list[tuple[bytes, bytes]]) -> None:
    await send(settings.kafka_bootstrap, REPORT_REQUESTS, msgs)


async def test_bad_report_ids_are_refused_at_http_kafka_and_cli(
    settings: Settings, wall: tuple[WorkerProcess, dict[str, list[Booking]]]
) -> None:
    worker, _ = wall
    root = settings.artifact_dir
    # B has files in the store; the attack used to delete them all (`..` cleanup)
    b_status = await request_report_http(worker.url, settings, B, {**BODY, "report_id": "keep-me"})
    assert b_status["status"] == "completed"
    before = files_in(root)
    assert f"{B}/keep-me/monthly_booking_summary.csv" in before

    # HTTP body: 400 naming $.report_id, nothing recorded
    async with aiohttp.ClientSession(worker.url) as s:
        for bad in BAD_IDS:
            async with s.post(
                f"/orgs/{A}/reports", json={**BODY, "report_id": bad}, headers=auth(settings, A)
            ) as r:
                body = await r.json()
                assert r.status == 400, (bad, body)
                assert body["error"]["field"] == "$.report_id", (bad, body)
        # HTTP path: a bad id is never looked up (400 naming it, or no route at all)
        for raw in ("%2e%2e", "a%01b", "a%5Cb", "%2E"):
            async with s.get(f"/orgs/{A}/reports/{raw}", headers=auth(settings, A)) as r:
                body = await r.json()
                assert r.status in (400, 404), (raw, body)
                if r.status == 400:
                    assert body["error"]["field"] == "path.report_id"
        async with s.get(f"/orgs/{A}/reports/a%01b", headers=auth(settings, A)) as r:
            assert r.status == 400 and (await r.json())["error"]["field"] == "path.report_id"
    bad_ids = await db_rows(
        settings, "SELECT id FROM reports WHERE id = ANY($1::text[])", [b for b in BAD_IDS if b]
    )
    assert bad_ids == []

    # Kafka: each bad request is dead-lettered naming $.report_id; no status, no row, no file
    marker = f"kafka-bad-{time.time_ns()}"
    msgs = []
    for bad in BAD_IDS:
        doc = {
            **BODY,
            "schema_version": 1,
            "report_id": bad,
            "organization_id": A,
            "user_id": marker,
            "requested_at": datetime.now(UTC).isoformat(),
        }
        msgs.append((f"{A}/{bad}".encode(), orjson.dumps(doc)))
    await send_requests(settings, msgs)

    async def all_dead() -> bool:
        mine = [
            r
            for r in await read_topic(settings.kafka_bootstrap, DEAD_LETTER)
            if marker.encode() in (r.value or b"")
        ]
        # every one of them (each consumer group on the topic dead-letters its copy)
        return {r.key for r in mine} == {f"{A}/{bad}".encode() for bad in BAD_IDS} and all(
            dict(r.headers)["dlq.field"] == b"$.report_id" for r in mine
        )

    await wait_until(all_dead, 60, "every bad request dead-lettered naming $.report_id")

    # CLI: refused before anything is sent, naming the option
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "POSTGRES_DSN": as_role(settings.postgres_dsn, APP_ROLE),
    }
    for args, option in (
        (
            [
                "report",
                "--org",
                A,
                "--from",
                "2026-01-01",
                "--to",
                "2026-01-31",
                "--report-id",
                "..",
            ],
            "--report-id",
        ),
        (["report", "--org", "..", "--from", "2026-01-01", "--to", "2026-01-31"], "--org"),
        (["cancel", "--org", A, "a/b"], "REPORT_ID"),
        (["token", "--org", ".."], "--org"),
        (["token", "--org", A, "--user", "a\x01"], "--user"),
        (["org", ".", "--zone", "Europe/Lisbon"], "ORG"),
        (["venue", A, "..", "--capacity", "2"], "VENUE"),
    ):
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-c",
                "import sys; from stream_app.cli import main; sys.exit(main())",
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0, (args, done.stdout)
        assert option in done.stderr, (args, done.stderr)
    assert await db_rows(settings, "SELECT 1 FROM venues WHERE id = '..'") == []
    assert await db_rows(settings, "SELECT 1 FROM organizations WHERE id = '.'") == []

    await asyncio.sleep(2)  # a wrongly accepted request would be generating by now
    after = files_in(root)
    assert {k: after.get(k) for k in before} == before  # nothing deleted or changed

    def tenants(files: dict[str, str]) -> set[str]:
        return {k for k in files if k.startswith((f"{A}/", f"{B}/"))}

    assert tenants(after) == tenants(before)  # nothing written (no file beside the folders)


async def test_both_organisations_own_schedule_monthly_and_scheduled_ids_are_random(
    settings: Settings, wall: tuple[WorkerProcess, dict[str, list[Booking]]]
) -> None:
    worker, books = wall
    # (c) the same schedule id in two organisations: no 409, nothing revealed
    status_b, created_b = await create_schedule(worker, settings, B, schedule_body("monthly"))
    assert status_b == 201, created_b
    status_a, created_a = await create_schedule(worker, settings, A, schedule_body("monthly"))
    assert status_a == 201, created_a
    # a 409 only for the caller's own id
    again, body = await create_schedule(worker, settings, B, schedule_body("monthly"))
    assert again == 409 and body["error"]["field"] == "$.schedule_id"
    # A pausing "monthly" pauses A's, never B's
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.post(f"/orgs/{A}/schedules/monthly/pause", headers=auth(settings, A)) as r,
    ):
        assert r.status == 200, await r.text()
    paused = await db_rows(
        settings, "SELECT organization_id, paused FROM schedules WHERE id = 'monthly' ORDER BY 1"
    )
    assert [tuple(r) for r in paused] == [(A, True), (B, False)]

    # B's schedule fires within a minute; its report id is random, not sched-<id>-<time>
    async def b_delivered() -> bool:
        rows = await db_rows(
            settings,
            "SELECT status FROM schedule_runs WHERE organization_id = $1 AND schedule_id ="
            " 'monthly' AND status = 'delivered'",
            B,
        )
        return bool(rows)

    await wait_until(b_delivered, 150, "B's monthly run delivered")
    (run,) = await db_rows(
        settings,
        "SELECT id, report_ids, fire_time FROM schedule_runs WHERE organization_id = $1"
        " AND schedule_id = 'monthly' AND status = 'delivered' ORDER BY fire_time LIMIT 1",
        B,
    )
    (scheduled_id,) = run["report_ids"]
    assert re.fullmatch(r"sched-[0-9a-f]{32}", scheduled_id)
    guessable = f"sched-monthly-{run['fire_time'].astimezone(UTC):%Y%m%dT%H%M%SZ}"
    assert await db_rows(settings, "SELECT 1 FROM reports WHERE id = $1", guessable) == []
    b_row = await report_row(settings, B, scheduled_id)
    assert b_row["status"] == "completed"
    b_file = settings.artifact_dir / B / scheduled_id / "monthly_booking_summary.csv"
    b_bytes = b_file.read_bytes()  # ciphertext on disk (encryption at rest)
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(f"/orgs/{B}/reports/{scheduled_id}/files/csv", headers=auth(settings, B)) as r,
    ):
        assert r.status == 200
        b_plain = await r.read()
    assert b"monthly" not in b_bytes and b_plain != b_bytes

    # (a) A squats B's scheduled id (even knowing it): it only ever names A's own report
    a_status = await request_report_http(
        worker.url, settings, A, {**BODY, "report_id": scheduled_id}
    )
    assert a_status["status"] == "completed"
    a_csv = await download(worker.url, settings, A, by_format(a_status)["csv"]["download_url"])
    assert csv_figures(a_csv) == expected(books[A])
    assert await report_row(settings, B, scheduled_id) == b_row
    assert b_file.read_bytes() == b_bytes
    runs = await db_rows(
        settings, "SELECT status, error FROM schedule_runs WHERE id = $1", run["id"]
    )
    assert [tuple(r) for r in runs] == [("delivered", None)]
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(f"/orgs/{B}/reports/{scheduled_id}/files/csv", headers=auth(settings, B)) as r,
    ):
        assert r.status == 200 and await r.read() == b_plain

    # stop B's schedule so it leaves no work behind
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.delete(f"/orgs/{B}/schedules/monthly", headers=auth(settings, B)) as r,
    ):
        assert r.status == 200


async def test_a_run_whose_report_never_completes_is_failed_with_the_cause(
    settings: Settings, wall: tuple[WorkerProcess, dict[str, list[Booking]]]
) -> None:
    worker, _ = wall
    # a paused schedule of B and a run whose report was lost (as the squatting attack left
    # it): submitted well over the bound ago, no report, no delivery
    status, created = await create_schedule(
        worker, settings, B, {**schedule_body("lost-run"), "paused": True}
    )
    assert status == 201, created
    counted_before = await timed_out_count(worker)
    lost = f"sched-{os.urandom(16).hex()}"
    fresh = f"sched-{os.urandom(16).hex()}"
    now = datetime.now(UTC)

    async def submitted_run(report_id: str, at: datetime) -> int:
        """A run of ``lost-run`` submitted at ``at`` whose one report is ``report_id``."""
        rows = await db_rows(
            settings,
            "INSERT INTO schedule_runs (schedule_id, organization_id, fire_time, missed_from,"
            " claimed_at, claimed_by, status, date_from, date_to, report_ids, reports,"
            " submitted_at) VALUES ('lost-run', $1, $2, $2, $2, 'test', 'submitted',"
            " '2026-01-01', '2026-01-31', $3, $4::jsonb, $2) RETURNING id",
            B,
            at,
            [report_id],
            orjson.dumps([{"report_id": report_id, "recipients": [], "filters": []}]).decode(),
        )
        return int(rows[0]["id"])

    stale_id = await submitted_run(lost, now - timedelta(hours=1))
    fresh_id = await submitted_run(fresh, now)

    async def failed() -> bool:
        got = await db_rows(settings, "SELECT status FROM schedule_runs WHERE id = $1", stale_id)
        return bool(got[0]["status"] == "failed")

    await wait_until(failed, 30, "the stale run failed")
    (row,) = await db_rows(settings, "SELECT error FROM schedule_runs WHERE id = $1", stale_id)
    assert lost in row["error"] and f"within {RUN_TIMEOUT_S} s of submission" in row["error"]
    # a run submitted just now is left alone (it is within the bound)
    (young,) = await db_rows(settings, "SELECT status FROM schedule_runs WHERE id = $1", fresh_id)
    assert young["status"] == "submitted"
    assert await timed_out_count(worker) >= counted_before + 1
    # visible to B through its runs
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(f"/orgs/{B}/schedules/lost-run/runs", headers=auth(settings, B)) as r,
    ):
        listed = {x["run_id"]: x for x in (await r.json())["runs"]}
    assert listed[stale_id]["status"] == "failed" and lost in listed[stale_id]["error"]
    await db_rows(
        settings, "DELETE FROM schedules WHERE organization_id = $1 AND id = 'lost-run'", B
    )


async def timed_out_count(worker: WorkerProcess) -> float:
    async with aiohttp.ClientSession(worker.url) as s, s.get("/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith("wedding_schedule_runs_timed_out_total "):
            return float(line.split()[1])
    return 0.0
