"""The optimiser and rollup routes through a real worker: the admin's path from the optimiser's
proposal to an answer read from a rollup, roles, other organisations, bad input."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest

from stream_app.db.history import copy_bookings
from stream_app.db.tenancy import Organization, upsert_organization
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from stream_app.web.auth import issue_token
from tests.aggregation.test_rollups import rows

ORG, OTHER = "rollup-http-a", "rollup-http-b"
BASE = f"/orgs/{ORG}"

REQUEST: dict[str, Any] = {
    "dataset": "bookings",
    "group_by": ["venue_id", {"field": "service_date", "grain": "month"}],
    "metrics": [{"op": "count"}, {"op": "avg", "field": "amount_minor"}],
    "time_range": {"field": "service_date", "from": "2016-01-01", "to": "2016-06-30"},
}


def bearer(settings: Settings, org: str, role: str = "admin") -> dict[str, str]:
    token = issue_token(
        settings.jwt_secret, user_id=f"{role}-1", organization_id=org, ttl_seconds=600, role=role
    )
    return {"Authorization": f"Bearer {token}"}


async def call(
    worker: WorkerProcess, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(worker.url, timeout=aiohttp.ClientTimeout(total=120)) as s,
        s.request(method, path, json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


@pytest.fixture
async def loaded(settings: Settings) -> None:
    """Both organisations with fresh bookings (2,000 each) and no rollups."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org, seed in ((ORG, 3), (OTHER, 4)):
            await upsert_organization(conn, Organization(org, org, "Europe/Lisbon", "EUR"))
            await conn.execute("DELETE FROM rollups WHERE organization_id = $1", org)
            await conn.execute("DELETE FROM bookings WHERE organization_id = $1", org)
            await copy_bookings(conn, rows(org, 2000, seed))
    finally:
        await conn.close()


async def test_from_the_optimisers_proposal_to_a_rollup_answer(
    settings: Settings, main_worker: WorkerProcess, loaded: None
) -> None:
    admin = bearer(settings, ORG)
    status, answer = await call(
        main_worker, "POST", f"{BASE}/aggregations/optimize", admin, REQUEST
    )
    assert status == 200, answer
    candidate = answer["candidates"][0]
    assert candidate["kind"] == "rollup" and candidate["same_result"] is True
    assert candidate["measured"]["checksum"] == answer["baseline"]["checksum"]
    assert answer["verdict"].startswith(("improvement", "no improvement"))
    status, before = await call(main_worker, "POST", f"{BASE}/aggregations", admin, REQUEST)
    assert status == 200 and before["source"] == {"table": "bookings"}
    # the admin creates the proposed rollup as it is
    status, created = await call(
        main_worker, "POST", f"{BASE}/rollups", admin, candidate["definition"]
    )
    assert status == 201, created
    rollup_id = created["id"]
    assert created["definition"]["dimensions"] == ["currency", "venue_id"]
    status, after = await call(main_worker, "POST", f"{BASE}/aggregations", admin, REQUEST)
    assert status == 200 and after["source"] == {"rollup": rollup_id}
    assert after["rows"] == before["rows"] and after["columns"] == before["columns"]
    status, listed = await call(main_worker, "GET", f"{BASE}/rollups", admin)
    assert status == 200 and [r["id"] for r in listed["rollups"]] == [rollup_id]
    assert listed["rollups"][0]["time_zone"] == "Europe/Lisbon"
    assert listed["rollups"][0]["row_count"] > 0

    # viewer and analyst: refused (rollups:manage is the admin's)
    for role in ("viewer", "analyst"):
        for method, path, body in (
            ("GET", f"{BASE}/rollups", None),
            ("POST", f"{BASE}/rollups", candidate["definition"]),
            ("DELETE", f"{BASE}/rollups/{rollup_id}", None),
            ("POST", f"{BASE}/aggregations/optimize", REQUEST),
        ):
            status, err = await call(main_worker, method, path, bearer(settings, ORG, role), body)
            assert (status, err["error"]["field"]) == (403, "role"), (role, path)
    # the other organisation's admin: not through ORG's path, and not through its own
    other = bearer(settings, OTHER)
    status, err = await call(main_worker, "GET", f"{BASE}/rollups", other)
    assert (status, err["error"]["field"]) == (403, "organization_id")
    status, listed = await call(main_worker, "GET", f"/orgs/{OTHER}/rollups", other)
    assert (status, listed["rollups"]) == (200, [])
    status, err = await call(main_worker, "DELETE", f"/orgs/{OTHER}/rollups/{rollup_id}", other)
    assert (status, err["error"]["field"]) == (404, "path.rollup_id")
    status, theirs = await call(main_worker, "POST", f"/orgs/{OTHER}/aggregations", other, REQUEST)
    assert status == 200 and theirs["source"] == {"table": "bookings"}
    assert theirs["rows"] != after["rows"]

    # bad input names the field
    bad = {**candidate["definition"], "measures": [{"op": "percentile", "field": "nights"}]}
    status, err = await call(main_worker, "POST", f"{BASE}/rollups", admin, bad)
    assert (status, err["error"]["field"]) == (400, "$.measures[0].op")
    status, err = await call(
        main_worker, "POST", f"{BASE}/aggregations/optimize?runs=99", admin, REQUEST
    )
    assert (status, err["error"]["field"]) == (400, "runs")
    status, err = await call(main_worker, "DELETE", f"{BASE}/rollups/x1", admin)
    assert (status, err["error"]["field"]) == (400, "rollup_id")

    # deleted: the table answers again; both changes are in the audit log
    status, gone = await call(main_worker, "DELETE", f"{BASE}/rollups/{rollup_id}", admin)
    assert (status, gone) == (200, {"id": rollup_id, "deleted": True})
    status, again = await call(main_worker, "POST", f"{BASE}/aggregations", admin, REQUEST)
    assert status == 200 and again["source"] == {"table": "bookings"}
    assert again["rows"] == before["rows"]
    status, audit = await call(main_worker, "GET", f"{BASE}/audit", admin)
    assert status == 200, audit
    actions = [
        (e["action"], e["target"]) for e in audit["events"] if e["action"].startswith("rollup.")
    ]
    assert sorted(actions) == [
        ("rollup.created", str(rollup_id)),
        ("rollup.deleted", str(rollup_id)),
    ]


def arabic_indic(n: int) -> str:
    """``n`` written in Arabic-Indic digits (U+0660..U+0669), which ``str.isdigit`` accepts."""
    return "".join(chr(0x0660 + int(d)) for d in str(n))


async def test_integers_in_paths_and_queries_are_ascii_only(
    settings: Settings, main_worker: WorkerProcess, loaded: None
) -> None:
    admin = bearer(settings, ORG)
    definition = {"dataset": "bookings", "dimensions": ["status"], "measures": [{"op": "count"}]}
    status, created = await call(main_worker, "POST", f"{BASE}/rollups", admin, definition)
    assert status == 201, created
    rollup_id = created["id"]
    for method, path, body, field in (
        ("DELETE", f"{BASE}/rollups/%C2%B2", None, "rollup_id"),  # "²"
        ("DELETE", f"{BASE}/rollups/%E2%91%A0", None, "rollup_id"),  # "①"
        ("DELETE", f"{BASE}/rollups/{arabic_indic(rollup_id)}", None, "rollup_id"),
        ("DELETE", f"{BASE}/rollups/0{rollup_id}", None, "rollup_id"),
        ("GET", f"{BASE}/query-stats?limit=%C2%B2", None, "limit"),
        ("GET", f"{BASE}/query-stats?limit={arabic_indic(5)}", None, "limit"),
        ("POST", f"{BASE}/aggregations/optimize?runs=%C2%B2", REQUEST, "runs"),
        ("POST", f"{BASE}/aggregations/optimize?runs={arabic_indic(3)}", REQUEST, "runs"),
    ):
        status, err = await call(main_worker, method, path, admin, body)
        assert (status, err["error"]["field"]) == (400, field), (path, status, err)
    # the rollup written in Arabic-Indic digits was not deleted, nor audited
    status, listed = await call(main_worker, "GET", f"{BASE}/rollups", admin)
    assert status == 200 and [r["id"] for r in listed["rollups"]] == [rollup_id]
    status, audit = await call(main_worker, "GET", f"{BASE}/audit", admin)
    assert status == 200
    deleted = [e["target"] for e in audit["events"] if e["action"] == "rollup.deleted"]
    assert str(rollup_id) not in deleted and arabic_indic(rollup_id) not in deleted
    assert all(t.isascii() for t in deleted)
    status, gone = await call(main_worker, "DELETE", f"{BASE}/rollups/{rollup_id}", admin)
    assert (status, gone) == (200, {"id": rollup_id, "deleted": True})
