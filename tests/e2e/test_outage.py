"""PostgreSQL or Kafka really stopped: every route that needs it answers a JSON 503 with
``Retry-After``; once PostgreSQL is back, the same routes answer normally.

The test runs its own Kafka, PostgreSQL, Redis and worker (``stream_app.devservices`` in a
state folder of its own): stopping the session's services would disturb the other tests. The
worker re-reads token revocations on every request (``WEDDING_REVOCATION_CACHE_S=0``), so every
organisation route needs PostgreSQL; the routes are enumerated from the worker's own router
(:func:`tests.e2e.test_roles.router_routes`), so a route added later is walked too.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.db import reports as report_db
from stream_app.db.tenancy import Venue
from stream_app.devservices import kafka, manager, postgres
from stream_app.devservices.manager import ServiceSettings
from stream_app.devservices.workers import WorkerProcess
from stream_app.reports.accept import validate
from stream_app.reports.cache import cache_key, message_key
from stream_app.settings import Settings
from stream_app.topics import REPORT_LANES, REPORT_REQUESTS
from stream_app.web.auth import issue_token
from tests.conftest import WorkerFactory, add_org, prepare_settings
from tests.e2e.helpers import send
from tests.e2e.test_roles import PATH_VALUES, QUERY, router_routes

ORG = PATH_VALUES["org"]  # the organisation the role walk's path values name
REPORT: dict[str, Any] = {
    "report_type": "monthly_booking_summary",
    "date_from": "2026-01-01",
    "date_to": "2026-01-31",
    "output_formats": ["csv"],
}


@dataclass
class Private:
    services: ServiceSettings
    settings: Settings
    worker: WorkerProcess
    state: Path

    def headers(self) -> dict[str, str]:
        token = issue_token(
            self.settings.jwt_secret,
            user_id="outage-admin",
            organization_id=ORG,
            ttl_seconds=900,
            role="admin",
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def private() -> AsyncIterator[Private]:
    state = Path(tempfile.gettempdir()) / f"wedding-outage-{os.getpid()}"
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    services = await asyncio.to_thread(manager.up, state)
    worker: WorkerProcess | None = None
    try:
        settings = await prepare_settings(services, state)
        await add_org(settings.postgres_dsn, ORG, venues=[Venue("v1", "Quinta", 2)])
        worker = WorkerFactory(settings, state).start(
            "wedding-outage", "w", WEDDING_REVOCATION_CACHE_S="0", WEDDING_SCHEDULING="0"
        )
        await worker.wait_ready(timeout_s=180, min_partitions=4)
        yield Private(services, settings, worker, state)
    finally:
        if worker is not None:
            worker.stop()
        await asyncio.to_thread(manager.down, state)
        shutil.rmtree(state, ignore_errors=True)


async def call(
    s: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, parsed JSON body or {}) of one request."""
    kwargs: dict[str, Any] = {"headers": headers}
    if method in ("POST", "PUT"):
        kwargs["json"] = {} if body is None else body
    else:
        kwargs["params"] = QUERY
    async with s.request(method, path.format(**PATH_VALUES), **kwargs) as r:
        try:
            parsed = await r.json(content_type=None)
        except ValueError:
            parsed = {}
        return r.status, dict(r.headers), parsed if isinstance(parsed, dict) else {}


async def completed_report(p: Private, s: aiohttp.ClientSession) -> dict[str, Any]:
    status, _, accepted = await call(s, "POST", "/orgs/{org}/reports", p.headers(), REPORT)
    assert status == 202, accepted
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, _, doc = await call(s, "GET", accepted["status_url"], p.headers())
        if status == 200 and doc["status"] in ("completed", "failed"):
            return doc
        await asyncio.sleep(0.3)
    raise TimeoutError("report not final")


def assert_dependency_503(
    dependency: str, what: Any, status: int, headers: dict[str, str], body: dict[str, Any]
) -> None:
    assert status == 503, (what, status, body)
    assert int(headers["Retry-After"]) >= 1, what
    assert headers["Content-Type"].startswith("application/json"), what
    error = body["error"]
    assert (error["code"], error["dependency"]) == ("dependency_unavailable", dependency), what
    assert error["retry_after_s"] == int(headers["Retry-After"])


async def test_postgresql_stopped_then_restarted(private: Private) -> None:
    p = private
    routes = [(m, path) for m, path, access, _ in router_routes() if access != "PUBLIC"]
    assert len(routes) >= 25
    async with aiohttp.ClientSession(p.worker.url) as s:
        before = await completed_report(p, s)
        assert before["status"] == "completed", before

        await asyncio.to_thread(postgres.stop, p.state)
        for method, path in routes:
            status, headers, body = await call(s, method, path, p.headers())
            assert_dependency_503("postgresql", (method, path), status, headers, body)
        # a route that needs no dependency keeps answering
        async with s.get("/metrics") as r:
            assert r.status == 200

        port = int(p.services.postgres_dsn.rpartition(":")[2].partition("/")[0])
        await asyncio.to_thread(postgres.resume, p.state, port)
        status_path = f"/orgs/{ORG}/reports/{before['report_id']}"
        deadline = time.monotonic() + 60
        while True:  # the pools drop their dead connections on first use
            status, headers, doc = await call(s, "GET", status_path, p.headers())
            if status == 200:
                break
            assert_dependency_503("postgresql", status_path, status, headers, doc)
            assert time.monotonic() < deadline, "PostgreSQL is back, the route still fails"
            await asyncio.sleep(0.5)
        assert status == 200 and doc["status"] == "completed", doc
        after = await completed_report(p, s)
        assert after["status"] == "completed", after
        assert after["report_id"] != before["report_id"]


def raw_request(report_id: str) -> bytes:
    """A report request of :data:`ORG` as a producer puts it on ``report-requests``."""
    return orjson.dumps(
        {
            **REPORT,
            "schema_version": 1,
            "report_id": report_id,
            "organization_id": ORG,
            "user_id": "outage-admin",
            "requested_at": "2026-12-06T12:00:00Z",
            "cache_strategy": "skip",
        }
    )


async def test_requests_met_by_a_postgresql_outage_are_answered_once_it_is_back(
    private: Private,
) -> None:
    """A request the router reads, and one its lane reads, while PostgreSQL is stopped are
    answered within seconds of its return (the agents try a transient error again), not
    failed ("cannot record request": the router) or left to the recovery sweep 120 s later
    (the lane)."""
    p = private
    # the lane's request: recorded and routed while PostgreSQL is up, read by the lane while
    # it is down (produced straight to the lane, as the router does)
    lane_raw = raw_request("outage-lane")
    req = validate(lane_raw)
    conn = await asyncpg.connect(p.settings.postgres_dsn)
    try:
        assert await report_db.insert_queued(
            conn,
            report_id=req.report_id,
            organization_id=ORG,
            user_id=req.user_id,
            report_type=req.report_type,
            request=orjson.loads(lane_raw),
            priority=req.priority,
            cache_strategy=req.cache_strategy,
            cache_key=cache_key(req),
        )
        await report_db.mark_routed(conn, ORG, req.report_id)
    finally:
        await conn.close()

    await asyncio.to_thread(postgres.stop, p.state)
    bootstrap = p.services.kafka_bootstrap
    await send(
        bootstrap, REPORT_LANES[req.priority], [(message_key(ORG, cache_key(req)), lane_raw)]
    )
    await send(
        bootstrap,
        REPORT_REQUESTS,
        [(f"{ORG}/outage-router".encode(), raw_request("outage-router"))],
    )
    await asyncio.sleep(4)  # both agents meet the outage (a try every 0.2-5 s)
    port = int(p.services.postgres_dsn.rpartition(":")[2].partition("/")[0])
    await asyncio.to_thread(postgres.resume, p.state, port)
    back = time.monotonic()

    async with aiohttp.ClientSession(p.worker.url) as s:
        for report_id in ("outage-lane", "outage-router"):
            path = f"/orgs/{ORG}/reports/{report_id}"
            while True:
                status, _, doc = await call(s, "GET", path, p.headers())
                if status == 200 and doc["status"] in ("completed", "failed"):
                    break
                # the recovery sweep would send the lane's request round after 120 s
                assert time.monotonic() - back < 60, (report_id, status, doc)
                await asyncio.sleep(0.5)
            assert doc["status"] == "completed", (report_id, doc)


async def test_kafka_stopped(private: Private) -> None:
    p = private
    async with aiohttp.ClientSession(p.worker.url) as s:
        await asyncio.to_thread(kafka.stop, p.services.kafka_pid)
        body = {**REPORT, "report_id": "during-kafka-outage"}
        status, headers, doc = await call(s, "POST", "/orgs/{org}/reports", p.headers(), body)
        assert_dependency_503("kafka", "POST /orgs/{org}/reports", status, headers, doc)
        # PostgreSQL is up: the request is on record as failed, with the reason
        status, _, stored = await call(
            s, "GET", "/orgs/{org}/reports/during-kafka-outage", p.headers()
        )
        assert status == 200, stored
        assert stored["status"] == "failed" and "could not enqueue" in stored["error"], stored
