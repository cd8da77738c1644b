"""The role × route matrix against a real worker, and the venue scope and priority rules.

Routes are enumerated from the worker application's own router (in a child process, as a
worker builds it), so a route added without a declared permission fails here. The expected
grants are written out below by hand, independently of ``stream_app.web.permissions``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp
import asyncpg
import pytest

from stream_app.db.reports import insert_queued
from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.schemas.tokens import new_token
from stream_app.settings import Settings
from stream_app.web.auth import issue_token
from tests.e2e.helpers import bearer, db_value, report_body, schedule_body

ORG, OTHER = "roles-a", "roles-b"

GRANTS = {
    "viewer": {"tables:read", "reports:read"},
    "analyst": {
        "tables:read",
        "reports:read",
        "reports:request",
        "reports:validate",
        "aggregations:run",
    },
    "admin": {
        "tables:read",
        "reports:read",
        "reports:request",
        "reports:validate",
        "aggregations:run",
        "rollups:manage",
        "schedules:manage",
        "deliveries:read",
        "tokens:manage",
        "gdpr:manage",
        "retention:manage",
        "audit:read",
        "query-stats:read",
        "debug:read",
    },
}
"""What each role may do (the issue's list, restated by hand)."""

PUBLIC_ROUTES = {
    ("GET", "/health"),
    ("GET", "/livez"),  # liveness: no data
    ("GET", "/readyz"),  # readiness: which service check fails, no tenant data
    ("GET", "/metrics"),
    ("GET", "/downloads/{token}"),
    ("GET", "/openapi.json"),  # the API's description, no tenant data
    ("GET", "/dashboard"),  # a static page; its data comes with the token the user gives it
    ("GET", "/dashboard/{asset}"),  # the page's script, style sheet and vendored chart library
}
"""The only routes without a bearer token (a signed link is its own credential)."""

FORWARDED_ROUTES = {
    ("GET", "/orgs/{org}/venues/{venue}/metrics"),
    ("GET", "/orgs/{org}/bookings/{booking}/payments"),
    ("GET", "/orgs/{org}/clients/{client}/interactions"),
    ("GET", "/orgs/{org}/suppliers/{supplier}/activity"),
    ("GET", "/orgs/{org}/interactions/summary"),
    ("GET", "/orgs/{org}/payments/summary"),
    ("GET", "/orgs/{org}/suppliers/summary"),
}
"""The reads one worker forwards to another (``stream_app.queries.routing.remote_json``'s
callers): the only routes a worker-to-worker token (role ``internal``) may call."""

PATH_VALUES = {
    "org": ORG,
    "venue": "v1",
    "report_id": "no-such-report",
    "fmt": "csv",
    "schedule_id": "no-such-schedule",
    "booking": "b1",
    "client": "c1",
    "supplier": "s1",
    "token": "x",
    "rollup_id": "0",
}
QUERY = {"from": "2016-01", "to": "2016-02"}

_ENUMERATE = """
import json
from stream_app.worker import app
from stream_app.web.views import ROUTE_SPECS
from stream_app.web.permissions import Permission
out = []
for route in app.web.web_app.router.routes():
    if route.method == "HEAD":
        continue
    path = route.resource.canonical
    spec = ROUTE_SPECS.get((route.method, path))
    access = None if spec is None else (
        spec.access.value if isinstance(spec.access, Permission) else repr(spec.access))
    out.append([route.method, path, access, bool(spec and spec.venue_aware),
                bool(spec and spec.forwarded)])
print(json.dumps(out))
"""


def router_routes() -> list[tuple[str, str, str | None, bool]]:
    """(method, path, declared access, venue_aware) of every route a worker serves."""
    return [(m, p, a, v) for m, p, a, v, _ in router_specs()]


def router_specs() -> list[tuple[str, str, str | None, bool, bool]]:
    """(method, path, declared access, venue_aware, forwarded) of every route a worker
    serves."""
    done = subprocess.run(
        [sys.executable, "-c", _ENUMERATE], capture_output=True, text=True, check=True
    )
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return [(str(m), str(p), a, bool(v), bool(f)) for m, p, a, v, f in rows]


def internal_token(settings: Settings, org: str = ORG) -> str:
    """A worker-to-worker token of ``org``, as a worker mints it
    (``stream_app.queries.routing._internal_token``)."""
    return new_token(
        settings.jwt_secret,
        user_id="internal",
        organization_id=org,
        ttl_seconds=120,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        internal=True,
    ).token


def token(settings: Settings, role: str, org: str = ORG, venues: list[str] | None = None) -> str:
    return bearer(settings, org, f"{role}-user", role, venues)


async def call(
    s: aiohttp.ClientSession,
    method: str,
    path: str,
    bearer: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    url = path.format(**PATH_VALUES)
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {bearer}", **(headers or {})}}
    if method in ("POST", "PUT"):
        kwargs["json"] = {} if body is None else body
    else:
        kwargs["params"] = QUERY
    async with s.request(method, url, **kwargs) as r:
        if r.headers.get("Content-Type", "").startswith("text/event-stream"):
            return r.status, {}  # a live stream (GET /orgs/{org}/updates): its status is enough
        try:
            parsed = await r.json(content_type=None)
        except ValueError:
            parsed = {}
        return r.status, parsed if isinstance(parsed, dict) else {}


@pytest.fixture(scope="module")
async def orgs(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (ORG, OTHER):
            await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
            for v in ("v1", "v2"):
                await upsert_venue(conn, org, Venue(v, v, 10))
    finally:
        await conn.close()


def test_every_route_declares_a_permission() -> None:
    routes = router_routes()
    assert len(routes) >= 27  # the API as of this test; a new route only adds
    undeclared = [(m, p) for m, p, access, _ in routes if access in (None, "UNDECLARED")]
    assert undeclared == []
    public = {(m, p) for m, p, access, _ in routes if access == "PUBLIC"}
    assert public == PUBLIC_ROUTES
    known = set().union(*GRANTS.values())
    assert {a for _, _, a, _ in routes if a != "PUBLIC"} <= known
    forwarded = {(m, p) for m, p, _, _, f in router_specs() if f}
    assert forwarded == FORWARDED_ROUTES


async def test_role_matrix(main_worker: WorkerProcess, settings: Settings, orgs: None) -> None:
    routes = [r for r in router_routes() if r[2] != "PUBLIC"]
    checked = 0
    async with aiohttp.ClientSession(main_worker.url) as s:
        for method, path, access, venue_aware in routes:
            assert access is not None
            for role in ("viewer", "analyst", "admin"):
                status, body = await call(s, method, path, token(settings, role))
                if access in GRANTS[role]:
                    assert status not in (401, 403), (role, method, path, status, body)
                else:
                    assert status == 403, (role, method, path, status, body)
                    assert body["error"]["field"] == "role"
                    assert f"'{access}'" in body["error"]["reason"]
                checked += 1
            # a worker-to-worker token: the forwarded reads only (a part of a summary only)
            headers = {"X-Wedding-Summary-Part": "1"} if path.endswith("/summary") else {}
            status, body = await call(s, method, path, internal_token(settings), None, headers)
            if (method, path) in FORWARDED_ROUTES:
                assert status not in (401, 403), ("internal", method, path, status, body)
            else:
                assert (status, body["error"]["code"], body["error"]["field"]) == (
                    403,
                    "forbidden",
                    "role",
                ), ("internal", method, path, body)
            if "{org}" in path:
                # the other organisation's admin: refused whatever the role
                status, body = await call(s, method, path, token(settings, "admin", OTHER))
                assert (status, body["error"]["field"]) == (403, "organization_id"), path
                # the right organisation, a token limited to venue v2
                scoped = token(settings, "admin", venues=["v2"])
                status, body = await call(s, method, path, scoped)
                if "{venue}" in path:
                    assert (status, body["error"]["field"]) == (403, "path.venue"), path
                elif not venue_aware:
                    assert (status, body["error"]["field"]) == (403, "venue_scope"), path
                else:
                    assert status != 401, (path, body)
    assert checked == 3 * len(routes)


async def test_venue_scope_and_priority(
    main_worker: WorkerProcess, settings: Settings, orgs: None
) -> None:
    scoped = token(settings, "analyst", venues=["v1"])
    analyst = token(settings, "analyst")
    report = report_body("2016-01-01", "2016-01-31")
    async with aiohttp.ClientSession(main_worker.url) as s:
        # the scoped token reads its venue, not the other one
        status, _ = await call(s, "GET", "/orgs/{org}/venues/v1/metrics", scoped)
        assert status == 200
        status, body = await call(s, "GET", "/orgs/{org}/venues/v2/occupancy", scoped)
        assert (status, body["error"]["field"]) == (403, "path.venue")
        # a report filter outside the scope is refused
        body_v2 = {**report, "data_filters": {"venue_id": ["v2"]}}
        status, body = await call(s, "POST", "/orgs/{org}/reports", scoped, body_v2)
        assert (status, body["error"]["field"]) == (403, "$.data_filters.venue_id")
        # without a filter, the scope becomes the filter: the stored request says v1 only
        status, body = await call(s, "POST", "/orgs/{org}/reports", scoped, report)
        assert status == 202, body
        report_id = body["report_id"]
        stored = await db_value(
            settings,
            "SELECT request -> 'data_filters' -> 'venue_id' FROM reports"
            " WHERE organization_id = $1 AND id = $2",
            ORG,
            report_id,
        )
        assert json.loads(stored) == ["v1"]
        # a report of every venue is not shown to the scoped token
        status, body = await call(s, "POST", "/orgs/{org}/reports", analyst, report)
        assert status == 202, body
        status, body = await call(s, "GET", f"/orgs/{{org}}/reports/{body['report_id']}", scoped)
        assert (status, body["error"]["field"]) == (403, "venue_scope")
        status, _ = await call(s, "GET", f"/orgs/{{org}}/reports/{report_id}", scoped)
        assert status == 200
        # aggregations: a dataset without venue_id is refused to the scoped token
        agg = {"dataset": "payments", "metrics": [{"op": "count"}]}
        status, body = await call(s, "POST", "/orgs/{org}/aggregations", scoped, agg)
        assert (status, body["error"]["field"]) == (403, "$.dataset")
        # priorities above normal: not for an analyst of an organisation not configured
        urgent = {**report, "priority": "critical"}
        status, body = await call(s, "POST", "/orgs/{org}/reports", analyst, urgent)
        assert (status, body["error"]["field"]) == (403, "$.priority")
        assert "critical" in body["error"]["reason"]
        status, body = await call(
            s, "POST", "/orgs/{org}/reports", token(settings, "admin"), urgent
        )
        assert status == 202, body


async def test_a_schedule_is_owned_by_the_subject_that_created_it(
    main_worker: WorkerProcess, settings: Settings, orgs: None
) -> None:
    def admin(user: str) -> str:
        return issue_token(
            settings.jwt_secret, user_id=user, organization_id=ORG, ttl_seconds=600, role="admin"
        )

    body = schedule_body(paused=True)
    async with aiohttp.ClientSession(main_worker.url) as s:
        status, created = await call(s, "POST", "/orgs/{org}/schedules", admin("alice"), body)
        assert status == 201, created
        assert created["created_by"] == "alice"
        path = f"/orgs/{{org}}/schedules/{created['schedule_id']}"
        status, replaced = await call(s, "PUT", path, admin("bob"), {**body, "cron": "0 9 1 * *"})
        assert status == 200, replaced
        assert (replaced["created_by"], replaced["cron"]) == ("alice", "0 9 1 * *")
        # an analyst cannot touch it, and a body claiming another owner is refused
        status, refused = await call(s, "DELETE", path, token(settings, "analyst"))
        assert (status, refused["error"]["field"]) == (403, "role")
        forged = {**body, "created_by": "mallory"}
        status, refused = await call(s, "POST", "/orgs/{org}/schedules", admin("bob"), forged)
        assert status == 400


async def test_another_organisations_schedule_is_the_same_404_on_every_route(
    main_worker: WorkerProcess, settings: Settings, orgs: None
) -> None:
    """A fresh user's finding: ``DELETE`` of an unknown schedule said ``no schedule 'x'`` where
    the other routes said ``schedule_id: 'x' does not exist``. Every route of a schedule answers
    one 404 body for an id its organisation does not have, whether another organisation has
    it or nobody does (the answer tells nothing of other tenants), and leaves it untouched."""
    body = schedule_body(paused=True)
    async with aiohttp.ClientSession(main_worker.url) as s:
        other_admin = token(settings, "admin", org=OTHER)
        status, created = await call(s, "POST", f"/orgs/{OTHER}/schedules", other_admin, body)
        assert status == 201, created
        taken = created["schedule_id"]
        for sid in (taken, "nobody-has-this-id"):
            answers = set()
            for method, suffix, payload in (
                ("GET", "", None),
                ("PUT", "", body),
                ("DELETE", "", None),
                ("POST", "/pause", None),
                ("POST", "/resume", None),
                ("GET", "/runs", None),
            ):
                path = f"/orgs/{ORG}/schedules/{sid}{suffix}"
                status, answer = await call(s, method, path, token(settings, "admin"), payload)
                answers.add((method + suffix, status, json.dumps(answer, sort_keys=True)))
            assert {a[1:] for a in answers} == {
                (
                    404,
                    json.dumps(
                        {
                            "error": {
                                "code": "not_found",
                                "field": "path.schedule_id",
                                "reason": f"schedule_id: {sid!r} does not exist",
                            }
                        },
                        sort_keys=True,
                    ),
                )
            }, answers
        status, still = await call(s, "GET", f"/orgs/{OTHER}/schedules/{taken}", other_admin)
        assert (status, still["cron"], still["paused"]) == (200, body["cron"], True)


async def test_a_worker_to_worker_token_is_no_admin(
    main_worker: WorkerProcess, settings: Settings, orgs: None
) -> None:
    """A security review's finding: a worker-to-worker token was an admin of its organisation,
    exempt from revocation and the limits, and travels in plain HTTP between the workers. Its
    own role now reads the forwarded tables only."""
    internal = internal_token(settings)
    refused = {
        "error": {
            "code": "forbidden",
            "reason": "role 'internal' (a worker-to-worker token) may only read the tables the"
            " workers forward to each other",
            "field": "role",
        }
    }
    async with aiohttp.ClientSession(main_worker.url) as s:
        for method, path in (
            ("GET", "/orgs/{org}/audit"),
            ("POST", "/orgs/{org}/reports/X/links/revoke"),
            ("POST", "/orgs/{org}/reports/X/cancel"),
            ("POST", "/orgs/{org}/tokens/revoke"),
            ("GET", "/orgs/{org}/venues/v1/occupancy"),  # a table read no worker forwards
        ):
            assert await call(s, method, path, internal) == (403, refused), path
        # a whole summary fans out to every worker: the workers ask for parts only
        status, body = await call(s, "GET", "/orgs/{org}/payments/summary", internal)
        assert (status, body["error"]["code"], body["error"]["field"]) == (403, "forbidden", "role")
        part = {"X-Wedding-Summary-Part": "1"}
        status, body = await call(s, "GET", "/orgs/{org}/suppliers/summary", internal, None, part)
        assert status == 200 and set(body) == {"partitions", "part"}, body
        status, body = await call(s, "GET", "/orgs/{org}/venues/v1/metrics", internal)
        assert status == 200 and body["venue_id"] == "v1", body


async def test_an_analyst_cancels_its_own_reports_only(
    main_worker: WorkerProcess, settings: Settings, orgs: None
) -> None:
    """An attacker round's analyst cancelled every scheduled run it saw on the live stream
    (a run's report is its schedule's creator's): the effect of pausing the schedules, which
    only admins may. Another user's report needs ``reports:cancel-any`` (admin)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for rid, owner in (("cx-admins", "admin-user"), ("cx-own", "analyst-user"), ("cx-b", "x")):
            await insert_queued(
                conn, report_id=rid, organization_id=ORG, user_id=owner,
                report_type="monthly_booking_summary", request={},
            )  # fmt: skip
    finally:
        await conn.close()
    analyst, admin = token(settings, "analyst"), token(settings, "admin")
    async with aiohttp.ClientSession(main_worker.url) as s:
        status, body = await call(s, "POST", "/orgs/{org}/reports/cx-admins/cancel", analyst)
        assert (status, body["error"]["field"]) == (403, "path.report_id"), body
        assert "reports:cancel-any" in body["error"]["reason"]
        status, body = await call(s, "POST", "/orgs/{org}/reports/cx-own/cancel", analyst)
        assert (status, body["status"]) == (200, "cancelled"), body
        status, body = await call(s, "POST", "/orgs/{org}/reports/cx-b/cancel", admin)
        assert (status, body["status"]) == (200, "cancelled"), body
        status, body = await call(s, "POST", "/orgs/{org}/reports/cx-none/cancel", analyst)
        assert status == 404, body
    states = await db_value(
        settings,
        "SELECT string_agg(id || '=' || status, ',' ORDER BY id) FROM reports"
        " WHERE organization_id = $1 AND id LIKE 'cx-%'",
        ORG,
    )
    assert states == "cx-admins=queued,cx-b=cancelled,cx-own=cancelled"
