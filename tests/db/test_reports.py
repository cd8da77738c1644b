"""PostgreSQL moves an organisation's ``history`` data version on any change to its history.

Migration 016's statement-level triggers, exercised under the roles that really write: the
application role inside a tenant transaction (row-level security on), the owner (loads, with
``COPY``), a superuser. Each expected bump is the number of rows a statement changed for that
organisation, counted here from the statement itself; the other organisation's version must
not move.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from stream_app.db.history import BookingRow, copy_bookings
from stream_app.db.reports import (
    HISTORY_STREAM,
    NOT_THE_OWNERS,
    cancel,
    claim_processing,
    data_versions,
    fetch_report,
    insert_queued,
    latest_completed_for_key,
    reclaim_own,
    set_status,
)
from stream_app.db.roles import APP_ROLE, OWNER_ROLE, as_role
from stream_app.db.tenancy import (
    Organization,
    Venue,
    tenant_transaction,
    upsert_organization,
    upsert_venue,
)
from stream_app.schedules.store import claim_due_runs, create_schedule
from tests.conftest import DatabaseFactory
from tests.schedules.builders import schedule

_RUN = uuid.uuid4().hex[:8]
A, B = f"fresh-a-{_RUN}", f"fresh-b-{_RUN}"
BOOKED_AT = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pg_dsn(make_database: DatabaseFactory) -> str:
    """A database of this module's own: a test truncates a history table of every organisation."""
    return await make_database("freshness")


async def version(conn: asyncpg.Connection, org: str) -> int:
    """The organisation's ``history`` version, read as a superuser (no row-level security)."""
    found = await conn.fetchval(
        "SELECT version FROM report_data_versions WHERE organization_id = $1 AND stream = $2",
        org,
        HISTORY_STREAM,
    )
    return int(found or 0)


@pytest.fixture
async def su(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def app_conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(as_role(pg_dsn, APP_ROLE))
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def orgs(su: asyncpg.Connection) -> AsyncIterator[None]:
    """Organisations A and B, a venue and a booking each (as the superuser)."""
    for org in (A, B):
        await upsert_organization(su, Organization(org, org, "Europe/Lisbon", "EUR"))
        await upsert_venue(su, org, Venue("v1", "Quinta", 2))
        await su.execute(
            "INSERT INTO bookings (organization_id, id, venue_id, service_date, booked_at,"
            " amount_minor, currency, status) VALUES ($1, 'b1', 'v1', '2026-06-06', $2,"
            " 100000, 'EUR', 'booked') ON CONFLICT DO NOTHING",
            org,
            BOOKED_AT,
        )
    yield
    await su.execute("DELETE FROM organizations WHERE id = ANY($1::text[])", [A, B])


async def test_app_role_writes_under_rls_bump_their_organisation_only(
    orgs: None, su: asyncpg.Connection, app_conn: asyncpg.Connection
) -> None:
    a0, b0 = await version(su, A), await version(su, B)
    assert a0 > 0 and b0 > 0  # the fixture's inserts were counted too

    # three payments in one statement: one bump of 3 (one statement, one organisation)
    async with tenant_transaction(app_conn, A):
        await app_conn.execute(
            "INSERT INTO payments (organization_id, id, booking_id, kind, amount_minor,"
            " currency, occurred_at) SELECT $1, 'p' || g, 'b1', 'payment', 1000, 'EUR', $2"
            " FROM generate_series(1, 3) g",
            A,
            BOOKED_AT,
        )
    assert (await version(su, A), await version(su, B)) == (a0 + 3, b0)

    # the application role reads the same version through its tenant scope
    assert await data_versions(app_conn, A, [HISTORY_STREAM]) == {HISTORY_STREAM: a0 + 3}

    # an UPDATE that rewrites rows to their own values changes nothing: no bump
    async with tenant_transaction(app_conn, A):
        status = await app_conn.execute(
            "UPDATE payments SET amount_minor = amount_minor WHERE organization_id = $1", A
        )
    assert status == "UPDATE 3"
    assert await version(su, A) == a0 + 3

    # an UPDATE of one row's amount: +2 (the row before and the row after differ)
    async with tenant_transaction(app_conn, A):
        await app_conn.execute(
            "UPDATE payments SET amount_minor = 2000 WHERE organization_id = $1 AND id = 'p1'", A
        )
    assert await version(su, A) == a0 + 5

    # a DELETE of two rows: +2; a statement that matches nothing: no bump
    async with tenant_transaction(app_conn, A):
        await app_conn.execute(
            "DELETE FROM payments WHERE organization_id = $1 AND id IN ('p2', 'p3')", A
        )
        await app_conn.execute("DELETE FROM payments WHERE organization_id = $1 AND id = 'x'", A)
    assert (await version(su, A), await version(su, B)) == (a0 + 7, b0)

    # a rolled-back change leaves the version where it was
    with pytest.raises(RuntimeError):
        async with tenant_transaction(app_conn, A):
            await app_conn.execute("DELETE FROM payments WHERE organization_id = $1", A)  # one row
            raise RuntimeError("roll back")
    assert await version(su, A) == a0 + 7


async def test_the_trigger_functions_cannot_be_called_by_the_app_role(
    app_conn: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute("SELECT wedding_fresh_bump_rows()")


async def test_organisation_zone_and_venue_name_changes_bump(
    orgs: None, su: asyncpg.Connection
) -> None:
    a0, b0 = await version(su, A), await version(su, B)
    # the same values again (an idempotent upsert): nothing changed, nothing bumped
    await upsert_organization(su, Organization(A, A, "Europe/Lisbon", "EUR"))
    await upsert_venue(su, A, Venue("v1", "Quinta", 2))
    assert await version(su, A) == a0
    await upsert_organization(su, Organization(A, A, "Asia/Tokyo", "EUR"))
    assert await version(su, A) == a0 + 2  # the row before and after
    await su.execute("UPDATE venues SET name = 'Quinta Nova' WHERE organization_id = $1", A)
    assert (await version(su, A), await version(su, B)) == (a0 + 4, b0)


async def test_owner_copy_load_and_a_statement_over_two_organisations(
    orgs: None, su: asyncpg.Connection, pg_dsn: str
) -> None:
    a0, b0 = await version(su, A), await version(su, B)
    owner = await asyncpg.connect(as_role(pg_dsn, OWNER_ROLE))
    try:
        rows = [
            BookingRow(
                org,
                f"copy-{i}",
                "v1",
                date(2026, 7, 1),
                1,
                BOOKED_AT,
                500,
                "EUR",
                "booked",
                None,
                None,
            )
            for org, n in ((A, 4), (B, 2))
            for i in range(n)
        ]
        assert await copy_bookings(owner, rows) == 6
    finally:
        await owner.close()
    assert (await version(su, A), await version(su, B)) == (a0 + 4, b0 + 2)

    # one UPDATE over both organisations (the superuser): each bumped by its own rows
    await su.execute(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = $2"
        " WHERE organization_id = ANY($1::text[]) AND id LIKE 'copy-%'",
        [A, B],
        BOOKED_AT,
    )
    assert (await version(su, A), await version(su, B)) == (a0 + 12, b0 + 6)


async def test_truncate_bumps_every_organisation(orgs: None, su: asyncpg.Connection) -> None:
    a0, b0 = await version(su, A), await version(su, B)
    await su.execute("TRUNCATE weddings")
    assert (await version(su, A), await version(su, B)) == (a0 + 1, b0 + 1)


async def test_a_bulk_update_counts_every_row_image(orgs: None, su: asyncpg.Connection) -> None:
    """Above 10,000 rows an UPDATE is not compared row by row: each row counts twice (before
    and after) even when rewritten to its own values; at 10,000 it is compared (nothing)."""
    await su.execute(
        "INSERT INTO payments (organization_id, id, booking_id, kind, amount_minor, currency,"
        " occurred_at) SELECT $1, 'bulk-' || g, 'b1', 'payment', 1, 'EUR', $2"
        " FROM generate_series(1, 10001) g",
        A,
        BOOKED_AT,
    )
    a0, b0 = await version(su, A), await version(su, B)
    await su.execute(
        "UPDATE payments SET amount_minor = amount_minor WHERE organization_id = $1"
        " AND id <> 'bulk-1'",
        A,
    )
    assert await version(su, A) == a0  # 10,000 rows compared: none changed
    await su.execute(
        "UPDATE payments SET amount_minor = amount_minor WHERE organization_id = $1", A
    )
    assert (await version(su, A), await version(su, B)) == (a0 + 2 * 10_001, b0)


async def test_a_report_by_id_and_the_newest_fresh_generation_of_a_cache_key(
    orgs: None, app_conn: asyncpg.Connection
) -> None:
    """``fetch_report`` and ``latest_completed_for_key`` read the organisation's own reports;
    a cache hit, or a generation older than the age limit, is no level-3 source."""
    key, now = f"key-{_RUN}", datetime.now(UTC)
    generations = (("gen-old", "miss", 3600), ("gen-new", "miss", 5), ("hit", "l1", 0))
    for report_id, level, age_s in generations:
        assert await insert_queued(
            app_conn,
            report_id=report_id,
            organization_id=A,
            user_id="u",
            report_type="monthly_booking_summary",
            request={},
            cache_key=key,
        )
        generated_at = now - timedelta(seconds=age_s)
        cache = {"level": level}
        assert await set_status(
            app_conn, A, report_id, "completed", cache=cache, generated_at=generated_at
        )
    newest = await latest_completed_for_key(app_conn, A, key, 7200)
    assert newest is not None and newest.id == "gen-new"  # the hit is newer, but a hit
    recent = await latest_completed_for_key(app_conn, A, key, 60)
    assert recent is not None and recent.id == "gen-new"
    assert await latest_completed_for_key(app_conn, A, key, 1) is None  # all too old
    assert await latest_completed_for_key(app_conn, B, key, 7200) is None  # A's reports
    old = await fetch_report(app_conn, A, "gen-old")
    assert old is not None and (old.status, old.cache_key, old.cache) == (
        "completed",
        key,
        {"level": "miss"},
    )
    assert await fetch_report(app_conn, B, "gen-old") is None
    assert await fetch_report(app_conn, A, "no-such-report") is None


async def test_a_claim_is_taken_back_only_by_the_worker_that_holds_it(
    orgs: None, app_conn: asyncpg.Connection, su: asyncpg.Connection
) -> None:
    """``claim_processing`` records its worker; ``reclaim_own`` takes a ``processing`` report
    back for that worker only: not after another worker took it over (a stale heartbeat),
    not once it is final, and never another organisation's."""
    rid = f"claimed-{_RUN}"
    assert await insert_queued(
        app_conn,
        report_id=rid,
        organization_id=A,
        user_id="u",
        report_type="monthly_booking_summary",
        request={},
    )
    assert await claim_processing(app_conn, A, rid, stale_after_s=15, claimer="w1")
    assert await su.fetchval("SELECT claimed_by FROM reports WHERE id = $1", rid) == "w1"
    assert await reclaim_own(app_conn, A, rid, "w1")
    assert not await reclaim_own(app_conn, A, rid, "w2")
    assert not await reclaim_own(app_conn, B, rid, "w1")  # B has no such report
    assert not await claim_processing(app_conn, A, rid, stale_after_s=15, claimer="w2")
    # w1's heartbeat went stale: w2 takes the report over, and w1 can no longer take it back
    await su.execute(
        "UPDATE reports SET updated_at = now() - interval '1 minute' WHERE id = $1", rid
    )
    assert await claim_processing(app_conn, A, rid, stale_after_s=15, claimer="w2")
    assert not await reclaim_own(app_conn, A, rid, "w1")
    assert await reclaim_own(app_conn, A, rid, "w2")
    assert await set_status(app_conn, A, rid, "completed")
    assert not await reclaim_own(app_conn, A, rid, "w2")


async def test_a_cancel_for_an_owner_changes_only_that_users_report(
    orgs: None, app_conn: asyncpg.Connection
) -> None:
    """The owner is part of the cancelling statement: an attacker round's analyst cancelled
    other users' reports in the moment between a separate check and the change."""
    rid = f"owned-{_RUN}"
    assert await insert_queued(
        app_conn, report_id=rid, organization_id=A, user_id="admin-ana",
        report_type="monthly_booking_summary", request={},
    )  # fmt: skip
    assert await cancel(app_conn, A, rid, "analyst-rui") == NOT_THE_OWNERS
    row = await fetch_report(app_conn, A, rid)
    assert row is not None and row.status == "queued"
    assert await cancel(app_conn, B, rid, "admin-ana") is None  # B has no such report
    assert await cancel(app_conn, A, "no-such", "analyst-rui") is None
    assert await cancel(app_conn, A, rid, "admin-ana") == "cancelled"
    assert await cancel(app_conn, A, rid, "analyst-rui") == NOT_THE_OWNERS  # still not theirs
    assert await cancel(app_conn, A, rid) == "cancelled"  # no owner: any (final, answered so)


async def test_a_scheduled_runs_report_is_nobodys_own_to_cancel(
    orgs: None, su: asyncpg.Connection, app_conn: asyncpg.Connection
) -> None:
    """A scheduled run's report is recorded under its schedule's creator; an analyst token
    with the creator's subject cancelled every run of an admin's schedules (an attacker
    round's finding). Only a cancel without an owner (``reports:cancel-any``) stops it; the
    same user's own ad-hoc report stays cancellable by that user."""
    t0 = datetime(2031, 1, 6, 9, 0, 30, tzinfo=UTC)
    await create_schedule(su, schedule(A, f"sched-cancel-{_RUN}", created_by="admin-ana"), t0)
    runs = await claim_due_runs(su, t0 + timedelta(minutes=59, seconds=31))
    (run,) = [r for r in runs if r.schedule.organization_id == A]
    (planned,) = run.reports
    assert await insert_queued(
        app_conn, report_id=planned.report_id, organization_id=A, user_id="admin-ana",
        report_type="monthly_booking_summary", request={},
    )  # fmt: skip
    own = f"own-{_RUN}"
    assert await insert_queued(
        app_conn, report_id=own, organization_id=A, user_id="admin-ana",
        report_type="monthly_booking_summary", request={},
    )  # fmt: skip
    assert await cancel(app_conn, A, planned.report_id, "admin-ana") == NOT_THE_OWNERS
    row = await fetch_report(app_conn, A, planned.report_id)
    assert row is not None and row.status == "queued"
    assert await cancel(app_conn, A, own, "admin-ana") == "cancelled"
    assert await cancel(app_conn, A, planned.report_id) == "cancelled"
