"""Issue 9's delivery attacks against a real worker (scheduler, report agent, delivery worker).

* Attack 3: organisation A's four schedules post to webhooks answering 503 with retries of up
  to ten attempts an hour apart; B's scheduled report still reaches B's webhook at once, and
  A's runs wait in the queue (``retrying`` with their due time), not in a delivery slot.
* Attack 5: A's webhook names ``localhost``; the name is resolved when the delivery is made,
  127.0.0.1 is refused, the internal service receives nothing and the run log says why. (The
  worker accepts loopback targets at creation, as every test receiver needs, so only the
  delivery-time guard stands between the name and the internal service.)
* Links: a delivered link downloads once (audited), then the report's revocation and the
  schedule's deletion make links answer 403; another tenant cannot revoke B's links.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth

pytestmark = pytest.mark.slow
GROUP = "wedding-delivery-attacks"
ORG_A, ORG_B = "atk-a", "atk-b"
SECRET = "webhook-secret-0123456789"
ATTACK_RETRY = {"max_attempts": 10, "base_backoff_s": 3600, "max_backoff_s": 86400}


@dataclass
class Receiver:
    """A webhook endpoint answering ``status``; keeps each body and its arrival time."""

    status: int
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrived_at: list[datetime] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(orjson.loads(await request.read()))
        self.arrived_at.append(datetime.now(UTC))
        return web.Response(status=self.status, text="internal service reply")


async def _serve(recv: Receiver, host: str) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    return runner, int(runner.addresses[0][1])


@dataclass
class Scenario:
    worker: WorkerProcess
    failing: Receiver
    working: Receiver
    internal: Receiver
    b_arrival_s: float


def schedule(schedule_id: str, url: str, retry: Mapping[str, float]) -> dict[str, Any]:
    return {
        "schedule_id": schedule_id,
        "report_type": "monthly_booking_summary",
        "date_range": "last_n_days:7",
        "output_formats": ["csv"],
        "cron": "* * * * *",
        "time_zone": "UTC",
        "min_interval_seconds": 0,
        "delivery": {"method": "webhook", "url": url, "secret": SECRET},
        "retry": dict(retry),
    }


async def _post(s: aiohttp.ClientSession, path: str, settings: Settings, org: str) -> Any:
    async with s.post(path, headers=auth(settings, org)) as r:
        return r.status, await r.json()


@pytest.fixture(scope="module")
async def scenario(settings: Settings, worker_factory: WorkerFactory) -> AsyncIterator[Scenario]:
    failing, working, internal = Receiver(503), Receiver(200), Receiver(200)
    runners = []
    r, failing_port = await _serve(failing, "127.0.0.2")
    runners.append(r)
    r, working_port = await _serve(working, "127.0.0.2")
    runners.append(r)
    r, internal_port = await _serve(internal, "localhost")
    runners.append(r)
    worker = worker_factory.start(
        GROUP,
        "a",
        WEDDING_SCHEDULER_INTERVAL_S="1",
        WEDDING_OFFSET_RESET="latest",
        WEDDING_ALLOW_PRIVATE_TARGETS="1",  # creation accepts loopback (test receivers)
        WEDDING_DELIVERY_ALLOW_PRIVATE_NETWORKS="127.0.0.2/32",  # delivery: only 127.0.0.2
        WEDDING_DELIVERY_POLL_S="0.5",
    )
    try:
        await worker.wait_ready(timeout_s=120, min_partitions=4)
        conn = await asyncpg.connect(settings.postgres_dsn)
        try:
            for org in (ORG_A, ORG_B):
                await upsert_organization(conn, Organization(org, org, "UTC", "GBP"))
                await upsert_venue(conn, org, Venue("hall", "Hall", capacity=1))
        finally:
            await conn.close()
        async with aiohttp.ClientSession(worker.url) as s:
            bodies = [
                (ORG_A, schedule(f"a-fail-{n}", f"http://127.0.0.2:{failing_port}/h", ATTACK_RETRY))
                for n in range(4)
            ]
            bodies.append(
                (
                    ORG_A,
                    schedule(
                        "a-ssrf",
                        f"http://localhost:{internal_port}/orgs/{ORG_B}/schedules",
                        {"max_attempts": 3, "base_backoff_s": 1, "max_backoff_s": 2},
                    ),
                )
            )
            bodies.append(
                (ORG_B, schedule("b-ok", f"http://127.0.0.2:{working_port}/h", ATTACK_RETRY))
            )
            for org, body in bodies:
                async with s.post(
                    f"/orgs/{org}/schedules", json=body, headers=auth(settings, org)
                ) as resp:
                    assert resp.status == 201, await resp.text()
        deadline = time.monotonic() + 150
        wanted = {f"a-fail-{n}" for n in range(4)}
        while time.monotonic() < deadline:
            if working.bodies and wanted <= {d["schedule_id"] for d in failing.bodies}:
                break
            await asyncio.sleep(0.5)
        assert working.bodies, "B's report never arrived"
        fire = datetime.fromisoformat(working.bodies[0]["fire_time"])
        await asyncio.sleep(3)  # let the refused SSRF run and any wrong retry show themselves
        yield Scenario(
            worker,
            failing,
            working,
            internal,
            (working.arrived_at[0] - fire).total_seconds(),
        )
    finally:
        # stop the schedules (the database outlives this module) and the worker
        async with aiohttp.ClientSession(worker.url) as s:
            for org, ids in (
                (ORG_A, [f"a-fail-{n}" for n in range(4)] + ["a-ssrf"]),
                (ORG_B, ["b-ok"]),
            ):
                for sid in ids:
                    async with s.delete(
                        f"/orgs/{org}/schedules/{sid}", headers=auth(settings, org)
                    ):
                        pass
        worker.stop()
        for r in runners:
            await r.cleanup()


async def _runs(worker: WorkerProcess, settings: Settings, org: str, sid: str) -> Any:
    async with (
        aiohttp.ClientSession(worker.url) as s,
        s.get(f"/orgs/{org}/schedules/{sid}/runs", headers=auth(settings, org)) as r,
    ):
        assert r.status == 200
        return await r.json()


async def test_failing_tenant_does_not_stop_another_tenants_delivery(
    scenario: Scenario, settings: Settings
) -> None:
    assert scenario.b_arrival_s < 60, f"B's report arrived {scenario.b_arrival_s:.0f} s late"
    b = await _runs(scenario.worker, settings, ORG_B, "b-ok")
    assert b["runs"][-1]["status"] == "delivered"
    assert {d["organization_id"] for d in scenario.working.bodies} == {ORG_B}
    # each of A's four first runs was tried once and waits an hour for its second attempt
    first_tries = [d for d in scenario.failing.bodies if d["organization_id"] == ORG_A]
    for n in range(4):
        a = await _runs(scenario.worker, settings, ORG_A, f"a-fail-{n}")
        first = a["runs"][-1]  # the oldest run
        assert first["status"] == "retrying", first
        (pending,) = first["pending_deliveries"]
        assert pending["next_attempt"] == 2 and "HTTP 503" in pending["last_error"]
        (attempt,) = [x for x in a["deliveries"] if x["report_id"] == first["report_ids"][0]]
        tried = datetime.fromisoformat(attempt["started_at"])
        due = datetime.fromisoformat(first["next_attempt_at"])
        assert 3600 <= (due - tried).total_seconds() < 3605  # base_backoff_s after the attempt
        assert attempt["outcome"] == "retrying" and "attempt 2 due at" in attempt["detail"]
    assert len({d["report_id"] for d in first_tries}) == len(first_tries)  # none sent twice
    # each attempt counted by method and outcome on /metrics (no organisation label)
    async with (
        aiohttp.ClientSession(scenario.worker.url) as s,
        s.get("/metrics") as r,
    ):
        text = await r.text()
    counted = {
        line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("wedding_delivery_attempts_total{")
    }
    assert counted['method="webhook",outcome="retrying"'] >= 4  # A's four first tries
    assert counted['method="webhook",outcome="delivered"'] >= 1  # B's
    assert counted['method="email",outcome="delivered"'] == 0


async def test_webhook_name_resolving_to_loopback_is_refused(
    scenario: Scenario, settings: Settings
) -> None:
    deadline = time.monotonic() + 60
    while True:
        runs = await _runs(scenario.worker, settings, ORG_A, "a-ssrf")
        if (runs["runs"] and runs["runs"][-1]["status"] == "failed") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert scenario.internal.bodies == []  # the internal service received nothing
    assert runs["runs"] and runs["runs"][-1]["status"] == "failed"
    assert "refused: 'localhost' resolves to" in runs["runs"][-1]["error"]
    first = [d for d in runs["deliveries"] if d["report_id"] == runs["runs"][-1]["report_ids"][0]]
    assert [(d["attempt"], d["outcome"], d["retriable"]) for d in first] == [(1, "failed", False)]
    assert "(loopback)" in first[0]["detail"]
    assert "internal service reply" not in first[0]["detail"]


async def test_links_are_audited_and_revocable(scenario: Scenario, settings: Settings) -> None:
    worker = scenario.worker
    b_doc = scenario.working.bodies[0]
    (artifact,) = b_doc["artifacts"]
    token = artifact["download_url"].split("/downloads/")[1]
    report_id = b_doc["report_id"]
    async with aiohttp.ClientSession(worker.url) as s:
        async with s.get(f"/downloads/{token}") as r:
            assert r.status == 200
            assert len(await r.read()) == artifact["size_bytes"]
        # the report status shows the links the delivery handed out
        async with s.get(f"/orgs/{ORG_B}/reports/{report_id}", headers=auth(settings, ORG_B)) as r:
            status = await r.json()
        assert [x["url"] for x in status["delivery_links"]] == [artifact["download_url"]]
        # another tenant can neither revoke B's links through its own path nor B's
        code, body = await _post(
            s, f"/orgs/{ORG_A}/reports/{report_id}/links/revoke", settings, ORG_A
        )
        assert code == 404 and body["error"]["field"] == "path.report_id"
        async with s.post(
            f"/orgs/{ORG_B}/reports/{report_id}/links/revoke", headers=auth(settings, ORG_A)
        ) as r:
            assert r.status in (401, 403)
        async with s.get(f"/downloads/{token}") as r:
            assert r.status == 200  # still valid
        code, body = await _post(
            s, f"/orgs/{ORG_B}/reports/{report_id}/links/revoke", settings, ORG_B
        )
        assert code == 200 and body["report_id"] == report_id
        async with s.get(f"/downloads/{token}") as r:
            assert r.status == 403
            assert "revoked" in (await r.json())["error"]["reason"]
        # a link of A's failing webhook (it received the links with the 503) dies with its
        # schedule
        a_doc = next(d for d in scenario.failing.bodies if d["schedule_id"] == "a-fail-0")
        a_token = a_doc["artifacts"][0]["download_url"].split("/downloads/")[1]
        async with s.get(f"/downloads/{a_token}") as r:
            assert r.status == 200
        async with s.delete(
            f"/orgs/{ORG_A}/schedules/a-fail-0", headers=auth(settings, ORG_A)
        ) as r:
            assert r.status == 200
        async with s.get(f"/downloads/{a_token}") as r:
            assert r.status == 403
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        audited = await conn.fetch(
            "SELECT organization_id, action, target FROM audit_log"
            " WHERE action IN ('link.downloaded', 'links.revoked') AND organization_id = ANY($1)"
            " ORDER BY id",
            [ORG_A, ORG_B],
        )
    finally:  # the database outlives the module: A's tokens of a next run work again
        await conn.execute("UPDATE organizations SET created_at = now() WHERE id = $1", ORG_A)
        await conn.close()
    assert [(r["organization_id"], r["action"]) for r in audited] == [
        (ORG_B, "link.downloaded"),
        (ORG_B, "link.downloaded"),
        (ORG_B, "links.revoked"),
        (ORG_A, "link.downloaded"),
    ]
    assert audited[0]["target"] == report_id


async def test_a_link_of_a_deleted_organisation_downloads_nothing(
    scenario: Scenario, settings: Settings
) -> None:
    """An attacker round at the 20th stop: a link of an organisation deleted by hand still
    downloaded its file from a worker holding the organisation's unwrapped data key (the
    link was checked against its own revocations only). Now a 404 naming why, from that very
    worker, and again after the id is registered anew (the link is the earlier one's)."""
    from stream_app.delivery.api import LinkSigner

    worker = scenario.worker
    a_doc = next(d for d in scenario.failing.bodies if d["schedule_id"] == "a-fail-1")
    signer = LinkSigner(settings.link_secret, worker.url)
    now = datetime.now(UTC)
    delivered = signer.verify(a_doc["artifacts"][0]["download_url"], now=now)
    # a link of no schedule (an ad-hoc delivery's): deleting the organisation deletes its
    # schedules, which revokes their links, but revokes nothing else
    a_token = signer.sign(ORG_A, delivered.path, now=now, report_id=delivered.report_id).url.split(
        "/downloads/"
    )[1]
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        async with aiohttp.ClientSession(worker.url) as s:
            async with s.get(f"/downloads/{a_token}") as r:
                assert r.status == 200  # the worker unwraps A's data key and keeps it
                assert len(await r.read()) == a_doc["artifacts"][0]["size_bytes"]
            await conn.execute("DELETE FROM organizations WHERE id = $1", ORG_A)
            async with s.get(f"/downloads/{a_token}") as r:
                body = await r.json()
                assert (r.status, body["error"]["code"], body["error"]["reason"]) == (
                    404,
                    "not_found",
                    "the link's organisation was deleted",
                )
            # registered again at once (by SQL; `wedding-engine org` refuses a deleted id):
            # the link was signed before the deletion, so it is still the deleted one's (an
            # attacker round: the registration time alone let a link signed within a minute
            # of it through)
            await upsert_organization(conn, Organization(ORG_A, ORG_A, "UTC", "GBP"))
            deleted = await conn.fetchval(
                "SELECT deleted_at FROM deleted_organizations WHERE organization_id = $1", ORG_A
            )
            async with s.get(f"/downloads/{a_token}") as r:
                body = await r.json()
                assert (r.status, body["error"]["reason"]) == (
                    404,
                    "the link was signed before its organisation was deleted"
                    f" ({deleted.isoformat()}): it belongs to the deleted organisation",
                )
    finally:
        await conn.close()


async def test_an_organisation_deleted_while_its_delivery_is_in_flight_logs_one_warning(
    scenario: Scenario, settings: Settings
) -> None:
    """An attacker round: deleting an organisation by hand while its webhook delivery was
    in flight logged an ERROR with a traceback (the outcome's foreign key); now one warning,
    and the worker goes on delivering for the others."""
    org = "atk-gone"
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hold)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.2", 0).start()
    port = int(runner.addresses[0][1])
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(org, org, "UTC", "GBP"))
        await upsert_venue(conn, org, Venue("hall", "Hall", capacity=1))
        body = {
            "report_id": "in-flight",
            "report_type": "monthly_booking_summary",
            "date_from": "2026-01-01",
            "date_to": "2026-01-31",
            "output_formats": ["csv"],
            "delivery": {
                "method": "webhook",
                "url": f"http://127.0.0.2:{port}/h",
                "secret": SECRET,
            },
        }
        async with (
            aiohttp.ClientSession(scenario.worker.url) as s,
            s.post(f"/orgs/{org}/reports", json=body, headers=auth(settings, org)) as r,
        ):
            assert r.status == 202, await r.text()
        await asyncio.wait_for(arrived.wait(), 60)
        await conn.execute("DELETE FROM organizations WHERE id = $1", org)
        release.set()
        log_path = scenario.worker.log_path
        deadline = time.monotonic() + 30
        said = ""
        while time.monotonic() < deadline:
            said = log_path.read_text(errors="replace")
            if "delivery of report in-flight (adhoc)" in said:
                break
            await asyncio.sleep(0.5)
        lines = [x for x in said.splitlines() if "delivery of report in-flight (adhoc)" in x]
        assert len(lines) == 1, lines
        assert "[WARNING]" in lines[0], lines[0]
        assert f"of {org!r}: its outcome refers to rows deleted meanwhile" in lines[0]
    finally:
        release.set()
        await conn.close()
        await runner.cleanup()
