"""The PostgreSQL wall: as the application's role, nothing of another tenant is read or written.

Two organisations share entity ids (client ``c1``, booking ``b1``). Every check logs in as the
role a worker uses (``wedding_app``) or the system role, never as the superuser that loads the
fixtures, and compares exact rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from stream_app.db import audit_events, tenancy
from stream_app.db.roles import (
    APP_ROLE,
    OWNER_ROLE,
    SYSTEM_ROLE,
    UnsafeDatabaseRoleError,
    as_role,
    check_serving_role,
)
from stream_app.db.tenancy import tenant_read, tenant_transaction
from stream_app.settings import Settings
from tests.test_cli import refused_worker

_RUN = uuid.uuid4().hex[:8]
A, B = f"wall-a-{_RUN}", f"wall-b-{_RUN}"  # fresh ids: audit rows can never be deleted
EMAIL = {A: "alice@a.example", B: "bob@b.example"}


@pytest.fixture(scope="module")
async def tenants(settings: Settings) -> AsyncIterator[None]:
    """Organisations A and B with the same client, booking and schedule ids (as superuser)."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        for org in (A, B):
            await conn.execute(
                "INSERT INTO organizations (id, name, time_zone, currency)"
                " VALUES ($1, $1, 'Europe/Lisbon', 'EUR')",
                org,
            )
            await conn.execute(
                "INSERT INTO clients (organization_id, id, display_name, email)"
                " VALUES ($1, 'c1', $2, $3)",
                org,
                f"client of {org}",
                EMAIL[org],
            )
            await conn.execute(
                "INSERT INTO bookings (organization_id, id, client_id, service_date, booked_at,"
                " amount_minor, currency, status) VALUES ($1, 'b1', 'c1', '2026-06-06', $2,"
                " $3, 'EUR', 'booked')",
                org,
                datetime(2026, 1, 1, tzinfo=UTC),
                100 if org == A else 200,
            )
        yield
    finally:
        await conn.close()


@pytest.fixture
async def app_conn(settings: Settings, tenants: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(as_role(settings.postgres_dsn, APP_ROLE))
    try:
        yield conn
    finally:
        await conn.close()


async def emails(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Every client row the connection can see, with no organisation predicate."""
    rows = await conn.fetch("SELECT organization_id, email FROM clients ORDER BY 1")
    return [(r[0], r[1]) for r in rows if r[0] in (A, B)]


async def superuser_rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_outside_a_tenant_scope_the_app_role_sees_and_writes_nothing(
    app_conn: asyncpg.Connection,
) -> None:
    assert await emails(app_conn) == []
    assert await app_conn.fetchval("SELECT count(*) FROM bookings") == 0
    # the old mechanism: a setting any statement can change
    async with app_conn.transaction():
        await app_conn.execute("SELECT set_config('app.organization_id', $1, true)", A)
        assert await emails(app_conn) == []
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await app_conn.execute(
            "INSERT INTO clients (organization_id, id, email) VALUES ($1, 'x', 'x@x')", A
        )


async def test_a_query_without_the_organisation_predicate_reads_only_the_tenant(
    app_conn: asyncpg.Connection,
) -> None:
    for org in (A, B):
        async with tenant_transaction(app_conn, org):
            assert await emails(app_conn) == [(org, EMAIL[org])]
            total = await app_conn.fetchval("SELECT sum(amount_minor) FROM bookings")
            assert total == (100 if org == A else 200)


async def test_set_config_and_reset_role_inside_the_scope_do_not_switch_the_tenant(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        await app_conn.execute("SELECT set_config('app.organization_id', $1, true)", B)
        assert await emails(app_conn) == [(A, EMAIL[A])]
        await app_conn.execute("RESET ROLE")
        assert await app_conn.fetchval("SELECT current_user") == APP_ROLE
        assert await emails(app_conn) == [(A, EMAIL[A])]
        # writes stay in A as well
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            await app_conn.execute(
                "INSERT INTO clients (organization_id, id, email) VALUES ($1, 'x', 'x@x')", B
            )
    async with tenant_transaction(app_conn, A):
        await app_conn.execute("RESET ROLE")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="cannot be changed"):
            await app_conn.execute("SELECT wedding_enter_tenant($1)", B)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(app_conn, A), tenant_transaction(app_conn, B):
            pass
    # the record of the scope is out of reach
    for sql in ("SELECT * FROM tenant_scope", "UPDATE tenant_scope SET organization_id = 'x'"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(sql)
    # nor can it take a role that reads across tenants
    for role in (SYSTEM_ROLE, OWNER_ROLE, "postgres"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(f"SET ROLE {role}")


async def test_the_scope_ends_with_its_transaction(app_conn: asyncpg.Connection) -> None:
    async with tenant_transaction(app_conn, A):
        assert len(await emails(app_conn)) == 1
    assert await emails(app_conn) == []
    async with app_conn.transaction():
        assert await emails(app_conn) == []


async def test_the_scope_bounds_its_statements_as_the_tenant_role(
    app_conn: asyncpg.Connection,
) -> None:
    """Inside the scope: the tenant, the tenant role, the statement time and temporary-file
    bounds; after it (they are transaction-local), the app role and the server's defaults."""
    query = (
        "SELECT wedding_current_tenant(), current_user::text,"
        " current_setting('statement_timeout'), current_setting('temp_file_limit')"
    )
    outside = tuple(await app_conn.fetchrow(query))
    async with tenant_transaction(app_conn, A):
        inside = tuple(await app_conn.fetchrow(query))
    assert inside == (A, "wedding_tenant", "2min", "1GB")
    assert tuple(await app_conn.fetchrow(query)) == outside
    assert outside[:2] == (None, "wedding_app") and outside[2:] != ("2min", "1GB")


async def test_writes_cannot_reach_or_move_rows_into_another_tenant(
    settings: Settings, app_conn: asyncpg.Connection
) -> None:
    tx = app_conn.transaction()
    await tx.start()
    try:
        await app_conn.execute("SELECT wedding_enter_tenant($1)", A)
        await app_conn.execute("SET LOCAL ROLE wedding_tenant")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with app_conn.transaction():
                await app_conn.execute("UPDATE clients SET organization_id = $1", B)
        # no predicate: only A's rows are touched
        assert await app_conn.execute("UPDATE bookings SET amount_minor = 1") == "UPDATE 1"
        assert await app_conn.execute("DELETE FROM clients") == "DELETE 1"
    finally:
        await tx.rollback()
    rows = await superuser_rows(
        settings,
        f"SELECT organization_id, amount_minor FROM bookings WHERE organization_id IN "
        f"('{A}', '{B}') ORDER BY 1",
    )
    assert rows == [(A, 100), (B, 200)]


async def test_every_tenant_table_forces_row_level_security_with_both_clauses(
    settings: Settings,
) -> None:
    tables = await superuser_rows(
        settings,
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid"
        "   AND p.polname = 'tenant_isolation' AND p.polqual IS NOT NULL"
        "   AND (p.polwithcheck IS NOT NULL OR c.relname = 'organizations'))"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'tenant_scope'"
        " AND (c.relname = 'organizations'"
        "   OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
        "   AND a.attname = 'organization_id' AND NOT a.attisdropped))"
        " ORDER BY 1",
    )
    names = [t[0] for t in tables]
    for needed in ("audit_log", "report_data_versions", "reports", "clients", "schedules"):
        assert needed in names
    assert [t for t in tables if t[1:] != (True, True, 1)] == []
    owners = await superuser_rows(
        settings,
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r'",
    )
    assert owners == [(OWNER_ROLE,)]


async def test_the_audit_log_is_append_only_for_the_app_role(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        await audit_events.record(app_conn, A, "u", "probe", None, {})
        assert await app_conn.fetchval("SELECT count(*) FROM audit_log") == 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(app_conn, A):
            await audit_events.record(app_conn, B, "u", "probe", None, {})
    for sql in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with tenant_transaction(app_conn, A):
                await app_conn.execute(sql)


async def test_the_system_role_reads_schedules_of_all_tenants_but_no_history(
    settings: Settings, tenants: None
) -> None:
    conn = await asyncpg.connect(as_role(settings.postgres_dsn, SYSTEM_ROLE))
    try:
        n = await conn.fetchval("SELECT count(*) FROM organizations WHERE id IN ($1, $2)", A, B)
        assert n == 2
        await conn.fetchval("SELECT count(*) FROM schedules")
        for table in ("clients", "bookings", "payments", "feedback", "gdpr_requests"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval(f"SELECT count(*) FROM {table}")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("SELECT wedding_enter_tenant($1)", A)
    finally:
        await conn.close()


async def test_only_a_role_under_row_level_security_may_serve(settings: Settings) -> None:
    for role, reason in (
        ("postgres", "is a superuser"),
        (OWNER_ROLE, "has BYPASSRLS"),
    ):
        conn = await asyncpg.connect(as_role(settings.postgres_dsn, role))
        try:
            with pytest.raises(UnsafeDatabaseRoleError, match=f"POSTGRES_DSN: .*{reason}"):
                await check_serving_role(conn, "POSTGRES_DSN")
        finally:
            await conn.close()
    for role in (APP_ROLE, SYSTEM_ROLE):
        conn = await asyncpg.connect(as_role(settings.postgres_dsn, role))
        try:
            assert await check_serving_role(conn, "POSTGRES_DSN") == role
        finally:
            await conn.close()


def test_a_worker_refuses_to_start_as_the_superuser(settings: Settings) -> None:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        POSTGRES_DSN=settings.postgres_dsn,  # the superuser
        POSTGRES_SYSTEM_DSN=as_role(settings.postgres_dsn, SYSTEM_ROLE),
    )
    stderr = refused_worker(env)
    assert "POSTGRES_DSN: the database role 'postgres' is a superuser" in stderr


async def test_a_nested_scope_of_the_same_tenant_is_a_savepoint(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        async with tenant_transaction(app_conn, A):
            assert await emails(app_conn) == [(A, EMAIL[A])]
        assert await emails(app_conn) == [(A, EMAIL[A])]


async def test_a_rolled_back_savepoint_cannot_switch_the_tenant(
    app_conn: asyncpg.Connection,
) -> None:
    """The attack tests' sequence: enter A inside a savepoint, roll it back, enter B."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="top level"):
        async with app_conn.transaction():
            await app_conn.execute("SAVEPOINT s1")
            await app_conn.execute("SELECT wedding_enter_tenant($1)", A)
    # entered at the top level, a later savepoint rolled back keeps it
    async with tenant_transaction(app_conn, A):
        await app_conn.execute("SAVEPOINT s2")
        await app_conn.execute("ROLLBACK TO SAVEPOINT s2")
        assert await emails(app_conn) == [(A, EMAIL[A])]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute("SELECT wedding_enter_tenant($1)", B)
    # an open transaction without a tenant: the scope is entered at its level and stays
    async with app_conn.transaction():
        async with tenant_transaction(app_conn, A):
            pass
        assert await emails(app_conn) == [(A, EMAIL[A])]


def statements_of(conn: asyncpg.Connection) -> list[str]:
    """From now on, the text of every statement ``conn`` sends (asyncpg's query logger, which
    reports on the event loop's next turn: :func:`logged` first)."""
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    return sent


async def logged(sent: list[str]) -> list[str]:
    await asyncio.sleep(0)
    return sent


async def test_a_tenant_read_inside_the_same_tenants_transaction_sends_only_its_reads(
    app_conn: asyncpg.Connection,
) -> None:
    async with tenant_transaction(app_conn, A):
        sent = statements_of(app_conn)
        async with tenant_read(app_conn, A):
            assert await emails(app_conn) == [(A, EMAIL[A])]
        assert [q[:34] for q in await logged(sent)] == ["SELECT organization_id, email FROM"]
    # outside any scope it is a tenant transaction of its own: BEGIN, enter, the read, COMMIT
    (await logged(sent)).clear()  # the outer scope's COMMIT
    async with tenant_read(app_conn, B):
        assert await emails(app_conn) == [(B, EMAIL[B])]
    assert [q.split()[0] for q in await logged(sent)] == ["BEGIN;", "SELECT", "SELECT", "COMMIT;"]
    assert "wedding_enter_tenant('" + B in sent[1]
    assert tenancy._open_scopes == {}


async def test_a_tenant_read_of_another_tenant_inside_a_scope_is_refused(
    app_conn: asyncpg.Connection,
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with tenant_transaction(app_conn, A), tenant_read(app_conn, B):
            await emails(app_conn)
    assert tenancy._open_scopes == {}
    # a scope that ended (by an error, too) leaves nothing a later read could borrow
    with pytest.raises(ZeroDivisionError):
        async with tenant_transaction(app_conn, A):
            _ = 1 / 0
    assert tenancy._open_scopes == {} and not app_conn.is_in_transaction()
    async with tenant_read(app_conn, B):
        assert await emails(app_conn) == [(B, EMAIL[B])]
    # a transaction this module did not open: entered at its level, as tenant_transaction does
    async with app_conn.transaction():
        async with tenant_read(app_conn, A):
            assert await emails(app_conn) == [(A, EMAIL[A])]
        assert await emails(app_conn) == [(A, EMAIL[A])]


@pytest.mark.parametrize("org", [A, "o'x); SET LOCAL ROLE wedding_app; --", "a\\b"])
async def test_both_ways_of_entering_fix_the_same_scope(
    app_conn: asyncpg.Connection, org: str
) -> None:
    """A plain id enters in one simple-protocol round trip (the id as a literal); any other
    text goes as a bound parameter: the same tenant, role and bounds, nothing injected."""
    query = (
        "SELECT wedding_current_tenant(), current_user::text,"
        " current_setting('statement_timeout'), current_setting('temp_file_limit')"
    )
    async with tenant_transaction(app_conn, org):
        assert tuple(await app_conn.fetchrow(query)) == (org, "wedding_tenant", "2min", "1GB")
