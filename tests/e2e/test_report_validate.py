"""``POST /orgs/{org}/reports/validate`` against a real worker and PostgreSQL.

The organisation's history is written here with known faults (a payment naming no booking, a
payment in another currency than its booking, a booking refunded more than paid, a venue of
unknown capacity); the expected finding lines are written out from those rows, and the same
findings must be the ones the generated report carries. Nothing may be stored by a validation.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from stream_app.db.tenancy import Organization, Venue, upsert_organization, upsert_venue
from stream_app.devservices.workers import WorkerProcess
from stream_app.settings import Settings
from tests.conftest import WorkerFactory
from tests.e2e.helpers import auth, download, request_report_http

ORG = f"validate-{uuid.uuid4().hex[:6]}"
RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-31"}
AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def headers(
    settings: Settings, role: str = "analyst", venues: list[str] | None = None
) -> dict[str, str]:
    return auth(settings, ORG, f"{role}-user", role=role, venues=venues)


@pytest.fixture(scope="module")
async def history(settings: Settings) -> None:
    """Venues v1 (capacity 2) and v2 (capacity unknown); bookings b1 (EUR 500.00, paid
    200.00 and refunded 300.00: more refunded than paid) and b2 (EUR 100.00, paid in GBP);
    payment p9 naming booking nope (no such booking)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await upsert_organization(conn, Organization(ORG, ORG, "Europe/Lisbon", "EUR"))
        await upsert_venue(conn, ORG, Venue("v1", "Quinta", 2))
        await upsert_venue(conn, ORG, Venue("v2", "Palacio", None))
        for bid, venue, cents in (("b1", "v1", 50_000), ("b2", "v2", 10_000)):
            await conn.execute(
                "INSERT INTO bookings (organization_id, id, venue_id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, $2, $3, '2026-03-14', $4, $5,"
                " 'EUR', 'booked')",
                ORG,
                bid,
                venue,
                datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
                cents,
            )
        for pid, booking, kind, cents, cur in (
            ("p1", "b1", "payment", 20_000, "EUR"),
            ("p2", "b1", "refund", 30_000, "EUR"),
            ("p3", "b2", "payment", 10_000, "GBP"),
            ("p9", "nope", "payment", 5_000, "EUR"),
        ):
            await conn.execute(
                "INSERT INTO payments (organization_id, id, booking_id, kind, amount_minor,"
                " currency, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                ORG,
                pid,
                booking,
                kind,
                cents,
                cur,
                AT,
            )
    finally:
        await conn.close()


async def post(
    worker: WorkerProcess, hdrs: dict[str, str], body: Any, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(worker.url) as s:
        data = raw if raw is not None else orjson.dumps(body)
        async with s.post(f"/orgs/{ORG}/reports/validate", data=data, headers=hdrs) as r:
            return r.status, await r.json(content_type=None)


async def stored_reports(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM reports WHERE organization_id = $1", ORG)
        )
    finally:
        await conn.close()


COMPLIANCE_ERRORS = [
    "error: 1 payment(s) or refund(s) dated in the period name a booking that does not exist: p9",
    "error: 1 payment(s) or refund(s) are in another currency than their booking (not netted): p3",
]
COMPLIANCE_WARNINGS = ["warning: 1 booking(s) have more refunded than paid: b1"]


async def test_compliance_findings_are_the_reports_own(
    settings: Settings, main_worker: WorkerProcess, history: None
) -> None:
    before = await stored_reports(settings)
    status, answer = await post(
        main_worker, headers(settings), {"report_type": "compliance", **RANGE}
    )
    assert status == 200, answer
    assert answer["errors"] == COMPLIANCE_ERRORS
    assert answer["warnings"] == COMPLIANCE_WARNINGS
    assert answer["infos"] == []
    assert answer["ok"] is False
    assert answer["counts"] == {"errors": 2, "warnings": 1, "infos": 0}
    assert (answer["organization_id"], answer["report_type"]) == (ORG, "compliance")
    assert (answer["date_from"], answer["date_to"]) == (RANGE["date_from"], RANGE["date_to"])
    assert await stored_reports(settings) == before  # nothing stored, nothing queued

    # the report itself carries the same findings, in its order
    report = await request_report_http(
        main_worker.url,
        settings,
        ORG,
        {"report_type": "compliance", **RANGE, "output_formats": ["json"]},
    )
    assert report["status"] == "completed", report
    doc = orjson.loads(
        await download(main_worker.url, settings, ORG, report["artifacts"][0]["download_url"])
    )
    assert doc["validation"] == COMPLIANCE_ERRORS + COMPLIANCE_WARNINGS


async def test_occupancy_warnings_and_a_venue_scoped_token(
    settings: Settings, main_worker: WorkerProcess, history: None
) -> None:
    body = {"report_type": "venue_occupancy", **RANGE}
    status, answer = await post(main_worker, headers(settings), body)
    assert status == 200, answer
    assert answer["errors"] == []
    assert answer["ok"] is True
    assert answer["warnings"][0] == (
        "warning: capacity unknown for 1 venue(s) (v2); their slots, occupancy and RevPAS are "
        "not computed (register a capacity: wedding-engine venue ORG VENUE --capacity N)"
    )
    # a token limited to v1 checks v1 only: v2's unknown capacity is not its finding
    status, scoped = await post(main_worker, headers(settings, venues=["v1"]), body)
    assert status == 200, scoped
    assert not any("capacity unknown" in w for w in scoped["warnings"]), scoped
    # and it may not name v2
    status, refused = await post(
        main_worker,
        headers(settings, venues=["v1"]),
        {**body, "data_filters": {"venue_id": ["v2"]}},
    )
    assert status == 403 and refused["error"]["field"] == "$.data_filters.venue_id", refused


@pytest.mark.parametrize(
    ("body", "field", "reason_part"),
    [
        ({"date_from": "2026-03-01", "date_to": "2026-03-31"}, "$.report_type", "missing"),
        ({"report_type": "nope", **RANGE}, "$.report_type", "is not one of"),
        (
            {"report_type": "compliance", "date_from": "2026-03-31", "date_to": "2026-03-01"},
            "$.date_to",
            "before date_from",
        ),
        (
            {"report_type": "compliance", **RANGE, "output_formats": ["pdf"]},
            "$.output_formats",
            "not a field of a validation",
        ),
        (
            {"report_type": "venue_occupancy", **RANGE, "data_filters": {"venue_id": ["zz"]}},
            "$.data_filters.venue_id",
            "unknown venue",
        ),
        (
            {"report_type": "compliance", **RANGE, "data_filters": {"venue_id": ["v1"]}},
            "$.data_filters.venue_id",
            "not supported",
        ),
        ([1, 2], "$", "JSON object"),
    ],
)
async def test_bad_bodies_name_the_field(
    settings: Settings,
    main_worker: WorkerProcess,
    history: None,
    body: Any,
    field: str,
    reason_part: str,
) -> None:
    status, answer = await post(main_worker, headers(settings), body)
    assert status == 400, answer
    assert answer["error"]["field"] == field, answer
    assert reason_part in answer["error"]["reason"], answer


async def test_not_json_and_a_viewer(
    settings: Settings, main_worker: WorkerProcess, history: None
) -> None:
    status, answer = await post(main_worker, headers(settings), None, raw=b"{not json")
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (
        400,
        "invalid_json",
        "$",
    )
    status, answer = await post(
        main_worker, headers(settings, "viewer"), {"report_type": "compliance", **RANGE}
    )
    assert status == 403 and answer["error"]["field"] == "role"
    assert "'reports:validate'" in answer["error"]["reason"]


async def test_a_venue_scoped_token_gets_its_venues_findings_only(
    settings: Settings, main_worker: WorkerProcess, history: None
) -> None:
    """A booking without a venue and one naming an unknown venue are the organisation's,
    not v1's: the whole-organisation validation counts them, a v1-scoped token does not."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for bid, venue in (("b-none", None), ("b-gone", "gone")):
            await conn.execute(
                "INSERT INTO bookings (organization_id, id, venue_id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, $2, $3, '2026-03-15', $4, 100,"
                " 'EUR', 'booked')",
                ORG,
                bid,
                venue,
                datetime(2026, 1, 5, 10, 0, tzinfo=UTC),
            )
        body = {"report_type": "venue_occupancy", **RANGE}
        status, whole = await post(main_worker, headers(settings), body)
        assert status == 200, whole
        assert "warning: 1 booking(s) in the range have no venue" in whole["warnings"]
        assert (
            "error: 1 booking(s) in the range name a venue that does not exist" in whole["errors"]
        )
        status, scoped = await post(main_worker, headers(settings, venues=["v1"]), body)
        assert status == 200, scoped
        lines = scoped["errors"] + scoped["warnings"] + scoped["infos"]
        assert not any("have no venue" in x or "does not exist" in x for x in lines), lines
        assert scoped["counts"]["errors"] == 0 and scoped["ok"] is True
    finally:
        await conn.execute(
            "DELETE FROM bookings WHERE organization_id = $1 AND id IN ('b-none', 'b-gone')", ORG
        )
        await conn.close()


async def test_the_body_is_limited_to_64_kib(
    settings: Settings, main_worker: WorkerProcess, history: None
) -> None:
    big = {"report_type": "compliance", **RANGE, "configuration": {"note": "x" * 70_000}}
    status, answer = await post(main_worker, headers(settings), big)
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (413, "too_large", "$")
    # just under the limit: read and judged on its content (compliance takes no such option)
    small = {"report_type": "compliance", **RANGE, "configuration": {"note": "x" * 60_000}}
    status, answer = await post(main_worker, headers(settings), small)
    assert status != 413, answer


async def test_one_organisations_validations_hold_its_share_of_the_slots_only(
    settings: Settings, worker_factory: WorkerFactory, own_workers: None, history: None
) -> None:
    """With ``WEDDING_ORG_SLOT_SHARE`` giving an organisation one of the worker's two slots:
    of three concurrent validations of ORG, one runs and two wait, then are refused (503
    ``busy`` with ``Retry-After``), while another organisation's validation is answered at
    once. ORG's running one is held still by a lock on ``payments`` (which ``compliance``
    reads and ``venue_occupancy`` does not)."""
    worker = worker_factory.start(
        "validate-share", "one", WEDDING_SCHEDULING="0", WEDDING_ORG_SLOT_SHARE="0.01"
    )
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    other = f"validate-other-{uuid.uuid4().hex[:6]}"

    async def validate(org: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
        hdrs = auth(settings, org, "analyst-user", role="analyst")
        async with (
            aiohttp.ClientSession(worker.url) as s,
            s.post(f"/orgs/{org}/reports/validate", json=body, headers=hdrs) as r,
        ):
            return r.status, await r.json(content_type=None), r.headers.get("Retry-After", "")

    locker = await asyncpg.connect(settings.postgres_dsn)
    watcher = await asyncpg.connect(settings.postgres_dsn)

    async def blocked() -> int:
        """Statements waiting for the lock on ``payments``."""
        return int(
            await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query ILIKE '%payments%'"
            )
        )

    try:
        await upsert_organization(locker, Organization(other, other, "Europe/Lisbon", "EUR"))
        await upsert_venue(locker, other, Venue("v1", "Solar", 3))
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
        try:
            compliance = {"report_type": "compliance", **RANGE}
            ours = [asyncio.create_task(validate(ORG, compliance)) for _ in range(3)]
            for _ in range(150):  # up to 15 s for the first to reach the lock
                if await blocked() >= 1:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2)
            assert await blocked() == 1  # ORG runs one validation at a time, not three

            started = time.monotonic()
            status, answer, _ = await validate(other, {"report_type": "venue_occupancy", **RANGE})
            assert time.monotonic() - started < 5
            assert (status, answer.get("organization_id")) == (200, other), answer

            for _ in range(100):  # the two waiting give up after QUEUE_WAIT_S (10 s)
                if sum(t.done() for t in ours) >= 2:
                    break
                await asyncio.sleep(0.2)
            refused = [t.result() for t in ours if t.done()]
            assert len(refused) == 2, refused  # the one holding the slot is still blocked
            for status, answer, retry_after in refused:
                assert (status, answer["error"]["code"], retry_after) == (503, "busy", "5")
                assert answer["error"]["field"] == "organization_id", answer  # its own share
                assert "share" in answer["error"]["reason"], answer
        finally:
            await lock.rollback()
        results = await asyncio.gather(*ours)
        assert sorted(s for s, _, _ in results) == [200, 503, 503]
        assert next(a for s, a, _ in results if s == 200)["errors"] == COMPLIANCE_ERRORS
    finally:
        await watcher.close()
        await locker.close()


async def test_two_tenants_long_jobs_leave_the_aggregations_free(
    settings: Settings, worker_factory: WorkerFactory, own_workers: None, history: None
) -> None:
    """Two tenants with one long job each (here compliance validations, held still by a lock
    on ``payments``; an attacker round used the optimiser, 17-25 s a call) held both of a
    worker's aggregation slots, and a third tenant's aggregations were 503 ``busy`` after
    10 s. Long jobs have slots of their own, three a worker and one an organisation: the
    third tenant's aggregation and validation are both answered at once."""
    worker = worker_factory.start("validate-long", "long", WEDDING_SCHEDULING="0")
    await worker.wait_ready(timeout_s=120, min_partitions=4)
    second, third = (f"validate-{n}-{uuid.uuid4().hex[:6]}" for n in ("second", "third"))

    async def post(org: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        hdrs = auth(settings, org, "analyst-user", role="analyst")
        async with (
            aiohttp.ClientSession(worker.url) as s,
            s.post(f"/orgs/{org}{path}", json=body, headers=hdrs) as r,
        ):
            return r.status, await r.json(content_type=None)

    locker = await asyncpg.connect(settings.postgres_dsn)
    watcher = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (second, third):
            await upsert_organization(locker, Organization(org, org, "Europe/Lisbon", "EUR"))
        await upsert_venue(locker, third, Venue("v1", "Solar", 3))
        lock = locker.transaction()
        await lock.start()
        await locker.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
        try:
            compliance = {"report_type": "compliance", **RANGE}
            held = [
                asyncio.create_task(post(org, "/reports/validate", compliance))
                for org in (ORG, second)
            ]
            for _ in range(150):  # up to 15 s for both to reach the lock
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query ILIKE '%payments%'"
                )
                if waiting >= 2:
                    break
                await asyncio.sleep(0.1)
            assert waiting == 2
            started = time.monotonic()
            status, answer = await post(
                third,
                "/aggregations",
                {"dataset": "bookings", "metrics": [{"op": "count"}]},
            )
            assert time.monotonic() - started < 5
            assert (status, answer["rows"]) == (200, [{"count": 0}]), answer
            # three long-job slots, one per organisation: the third tenant's validation has
            # the one the two busy tenants leave (occupancy reads no payments: not held)
            started = time.monotonic()
            status, answer = await post(
                third, "/reports/validate", {"report_type": "venue_occupancy", **RANGE}
            )
            assert time.monotonic() - started < 5
            assert (status, answer.get("organization_id")) == (200, third), answer
        finally:
            await lock.rollback()
        assert sorted(s for s, _ in await asyncio.gather(*held)) == [200, 200]
    finally:
        await watcher.close()
        await locker.close()
