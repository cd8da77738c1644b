"""The audit log on a real worker: a report requested over HTTP, downloaded, requests refused
(another organisation's token, a flood of bad tokens); ``GET /orgs/{org}/audit`` lists them for
that organisation only, and ``wedding-engine audit verify`` passes on the result.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import os
import sys
from typing import Any

import aiohttp
import asyncpg
import orjson

from stream_app.client import cancel_report
from stream_app.db.audit_events import list_events
from stream_app.db.reports import insert_queued
from stream_app.db.roles import APP_ROLE, as_role
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import run_cli
from tests.e2e.helpers import auth, download, request_report_http, schedule_body

ORG_A, ORG_B = "audit-org-a", "audit-org-b"
BODY = {
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-01-31",
    "output_formats": ["csv"],
}


async def get_json(base: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession(base) as s, s.get(path, headers=headers or {}) as r:
        return r.status, await r.json()


async def all_events(base: str, settings: Settings, org: str) -> list[dict[str, Any]]:
    """Every audit event of ``org`` through the API, paging 7 at a time."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        status, body = await get_json(
            base, f"/orgs/{org}/audit?after_seq={after}&limit=7", auth(settings, org, "boss")
        )
        assert status == 200, body
        assert body["organization_id"] == org
        # the hashed fields and the hash, not the row id: ids come from one sequence of every
        # organisation, so their gaps would count the other tenants' actions (attacker, F2)
        for e in body["events"]:
            assert set(e) == {
                "seq", "actor", "action", "target", "details", "outcome", "at", "prev_hash",
                "row_hash",
            }, e  # fmt: skip
        out += body["events"]
        if body["next_after_seq"] is None:
            return out
        after = body["next_after_seq"]


async def verify(settings: Settings, org: str) -> tuple[int, str]:
    """``wedding-engine audit verify --org ORG`` as the application role: (exit code, stdout)."""
    dsn = as_role(settings.postgres_dsn, APP_ROLE)
    code, out, _ = await run_cli(settings, dsn, "audit", "verify", "--org", org)
    return code, out


async def test_report_activity_and_refusals_are_audited_per_organisation(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    base = main_worker.url
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG_A, "A", "Europe/Paris", "EUR"))
        await upsert_organization(conn, Organization(ORG_B, "B", "Europe/Paris", "EUR"))
        await upsert_venue(conn, ORG_A, Venue("hall", "Hall", 1))
    finally:
        await conn.close()

    # A: a report over HTTP, completed and downloaded
    done = await request_report_http(base, settings, ORG_A, {**BODY, "report_id": "audit-r1"})
    assert done["status"] == "completed", done
    [csv_file] = done["artifacts"]
    data = await download(base, settings, ORG_A, csv_file["download_url"])
    assert data.startswith(b"\xef\xbb\xbf") or b"," in data
    # B: a report of its own (no venues: it fails)
    failed = await request_report_http(base, settings, ORG_B, {**BODY, "report_id": "audit-r2"})
    assert failed["status"] == "failed"

    # refused: B's token on A's report and on A's audit log; a flood of bad tokens
    status, body = await get_json(
        base, f"/orgs/{ORG_A}/reports/audit-r1", auth(settings, ORG_B, "mallory")
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, _ = await get_json(base, f"/orgs/{ORG_A}/audit", auth(settings, ORG_B, "mallory"))
    assert status == 403
    # A's own viewer on A's audit log, from an address of its own (refusals aggregate per
    # organisation, address and code): refused for its role, its subject recorded
    async with (
        aiohttp.ClientSession(
            base, connector=aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
        ) as s,
        s.get(f"/orgs/{ORG_A}/audit", headers=auth(settings, ORG_A, "vic", role="viewer")) as r,
    ):
        assert (r.status, (await r.json())["error"]["field"]) == (403, "role")
    bad = {"Authorization": "Bearer not-a-token"}
    async with aiohttp.ClientSession(base) as s:
        for _ in range(150):
            async with s.get(f"/orgs/{ORG_A}/reports/audit-r1", headers=bad) as r:
                assert r.status == 401

    events_a = await all_events(base, settings, ORG_A)
    assert [e["seq"] for e in events_a] == list(range(1, len(events_a) + 1))
    for before, after in itertools.pairwise(events_a):
        assert after["prev_hash"] == before["row_hash"]

    def of(events: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
        return [e for e in events if e["action"] == action]

    [requested] = of(events_a, "report.requested")
    assert (requested["actor"], requested["target"]) == ("tester", "audit-r1")
    assert requested["details"]["channel"] == "http"
    assert requested["details"]["output_formats"] == ["csv"]
    statuses = [(e["target"], e["details"]["status"]) for e in of(events_a, "report.status")]
    assert statuses == [("audit-r1", "processing"), ("audit-r1", "completed")]
    [downloaded] = of(events_a, "report.downloaded")
    assert (downloaded["actor"], downloaded["target"]) == ("tester", "audit-r1")
    assert downloaded["details"]["sha256"] == csv_file["sha256"]
    refused = of(events_a, "request.refused")
    assert {e["outcome"] for e in refused} == {"refused"}
    forbidden = [
        e
        for e in refused
        if e["details"]["status"] == 403 and e["details"]["field"] == "organization_id"
    ]
    # both 403s (same organisation, client and reason): the first is a row at once, the
    # second is counted into its minute's summary (or, across a minute, a row of its own)
    assert forbidden[0]["details"]["route"] == "/orgs/{org}/reports/{report_id}"
    assert forbidden[0]["details"]["count"] == 1
    assert 1 <= len(forbidden) <= 2
    # B's token: B's staff id is not written into A's log (an attacker's finding)
    assert [e["details"].get("token_subject") for e in forbidden] == [None] * len(forbidden)
    assert b"mallory" not in orjson.dumps(events_a)
    [role_refused] = [e for e in refused if e["actor"] == "127.0.0.3"]
    assert role_refused["details"]["field"] == "role"
    assert role_refused["details"]["token_subject"] == "vic"
    assert {e["actor"] for e in refused} == {"127.0.0.1", "127.0.0.3"}
    # 150 bad tokens in (at most) two minutes: at most two rows, not 150
    unauthorized = [e for e in refused if e["details"]["status"] == 401]
    assert 1 <= len(unauthorized) <= 2
    assert sum(e["details"]["count"] for e in unauthorized) <= 150

    # B sees its own chain only: its report, nothing of A's
    events_b = await all_events(base, settings, ORG_B)
    assert {e["target"] for e in events_b} == {"audit-r2"}
    assert [e["action"] for e in events_b] == [
        "report.requested",
        "report.status",
        "report.status",
    ]
    assert [e["details"]["status"] for e in of(events_b, "report.status")] == [
        "processing",
        "failed",
    ]
    assert "audit-r2" not in {e["target"] for e in events_a}

    # bad paging parameters name the field
    status, body = await get_json(
        base, f"/orgs/{ORG_A}/audit?limit=0", auth(settings, ORG_A, "boss")
    )
    assert (status, body["error"]["field"]) == (400, "limit")
    status, body = await get_json(
        base, f"/orgs/{ORG_A}/audit?after_seq=x", auth(settings, ORG_A, "boss")
    )
    assert (status, body["error"]["field"]) == (400, "after_seq")

    for org, events in ((ORG_A, events_a), (ORG_B, events_b)):
        code, out = await verify(settings, org)
        assert code == 0, out
        head = events[-1]
        assert (
            f"{org}: {len(events)} rows checked, chain intact"
            f" (head seq {head['seq']}, row_hash {head['row_hash']})"
        ) in out

    # once the minute is over, the worker's timer writes the counts: every refusal is counted
    # exactly once (150 bad tokens, three 403s: two of B's token, one of A's viewer)
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        refused = of(await all_events(base, settings, ORG_A), "request.refused")
        counts = {
            status: sum(e["details"]["count"] for e in refused if e["details"]["status"] == status)
            for status in (401, 403)
        }
        if counts == {401: 150, 403: 3} or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(2)
    assert counts == {401: 150, 403: 3}
    assert len(refused) <= 6  # first + summary per key, at most two minutes touched
    code, out = await verify(settings, ORG_A)
    assert code == 0, out


async def call(
    base: str, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(base) as s,
        s.request(method, path, headers=headers, json=body) as r,
    ):
        return r.status, await r.json()


async def test_schedule_changes_are_audited(settings: Settings, main_worker: WorkerProcess) -> None:
    org = "audit-org-sched"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, "S", "Europe/Paris", "EUR"))
    finally:
        await conn.close()
    h = auth(settings, org, "planner")
    schedule = schedule_body(
        schedule_id="weekly",
        delivery={"method": "email", "recipients": ["someone@example.org"]},
    )
    base = main_worker.url
    status, body = await call(base, "POST", f"/orgs/{org}/schedules", h, schedule)
    assert status == 201, body
    status, body = await call(
        base, "PUT", f"/orgs/{org}/schedules/weekly", h, {**schedule, "cron": "0 9 1 * *"}
    )
    assert status == 200, body
    for action in ("pause", "resume"):
        status, body = await call(base, "POST", f"/orgs/{org}/schedules/weekly/{action}", h)
        assert status == 200, body
    status, body = await call(base, "DELETE", f"/orgs/{org}/schedules/weekly", h)
    assert status == 200, body
    # a refused change (unknown schedule) is not an event: nothing changed
    status, body = await call(base, "DELETE", f"/orgs/{org}/schedules/weekly", h)
    assert status == 404

    events = await all_events(base, settings, org)
    assert [(e["action"], e["actor"], e["target"]) for e in events] == [
        ("schedule.created", "planner", "weekly"),
        ("schedule.updated", "planner", "weekly"),
        ("schedule.paused", "planner", "weekly"),
        ("schedule.resumed", "planner", "weekly"),
        ("schedule.deleted", "planner", "weekly"),
    ]
    assert events[0]["details"]["cron"] == "0 8 1 * *"
    assert events[1]["details"]["cron"] == "0 9 1 * *"
    assert events[0]["details"]["delivery_method"] == "email"
    assert "someone@example.org" not in str(events)  # recipients are not kept
    code, out = await verify(settings, org)
    assert code == 0 and f"{org}: 5 rows checked, chain intact" in out, out


async def test_a_cli_report_request_is_audited_with_the_os_user(
    settings: Settings, main_worker: WorkerProcess
) -> None:
    org = "audit-org-cli"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, "C", "Europe/Paris", "EUR"))
        await upsert_venue(conn, org, Venue("hall", "Hall", 1))
    finally:
        await conn.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stream_app.cli",
        "report",
        "--org",
        org,
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-31",
        "--formats",
        "csv",
        env={
            **os.environ,
            "POSTGRES_DSN": as_role(settings.postgres_dsn, APP_ROLE),
            "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out, err)
    report_id = out.decode().split()[1].rstrip(":")
    events = await all_events(main_worker.url, settings, org)
    [requested] = [e for e in events if e["action"] == "report.requested"]
    assert requested["actor"] == f"cli:{getpass.getuser()}"
    assert (requested["target"], requested["details"]["channel"]) == (report_id, "kafka")
    assert [e["details"]["status"] for e in events if e["action"] == "report.status"] == [
        "processing",
        "completed",
    ]


async def test_a_cancellation_is_audited_with_who_asked(settings: Settings) -> None:
    org = "audit-org-cancel"
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, "X", "Europe/Paris", "EUR"))
        await insert_queued(
            conn,
            report_id="audit-cancel-1",
            organization_id=org,
            user_id="u1",
            report_type="monthly_booking_summary",
            request={},
        )
        assert await cancel_report(settings, org, "audit-cancel-1", actor="cli:ops") == "cancelled"
        # a cancel of a completed report changes nothing and records nothing
        await insert_queued(
            conn,
            report_id="audit-cancel-2",
            organization_id=org,
            user_id="u1",
            report_type="monthly_booking_summary",
            request={},
        )
        await conn.execute("UPDATE reports SET status = 'completed' WHERE id = 'audit-cancel-2'")
        assert await cancel_report(settings, org, "audit-cancel-2", actor="cli:ops") == "completed"
        events = await list_events(conn, org)
    finally:
        await conn.close()
    assert [(e.actor, e.action, e.target, e.details) for e in events] == [
        ("cli:ops", "report.status", "audit-cancel-1", {"status": "cancelled"})
    ]
